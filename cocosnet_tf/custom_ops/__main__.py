"""python -m cocosnet_tf.custom_ops: build the compiled ops (unless cached) and print the library's path."""

import sys


def main() -> int:
    from cocosnet_tf.custom_ops import BuildError, library, library_path, compiler

    try:
        library()
        print(library_path(compiler()))
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
