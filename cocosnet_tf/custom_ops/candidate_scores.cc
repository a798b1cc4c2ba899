// CocosnetCandidateScores: scores[b, m, k] = <queries[b, m, :], values[b, index[b, m, k], :]>
// without materialising the gathered [B, M, K, C] candidates, and its gradient.
//
// queries [B, M, C], values [B, N, C] (float or double), index [B, M, K] int32 in [0, N).
// The twin in TensorFlow ops is cocosnet_tf.custom_ops.twin.candidate_scores.

#include <algorithm>
#include <cstdint>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace cocosnet {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("CocosnetCandidateScores")
    .Input("queries: T")
    .Input("values: T")
    .Input("index: int32")
    .Output("scores: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle queries, values, index;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &queries));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &values));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 3, &index));
      DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(queries, 2), c->Dim(values, 2), &unused));
      DimensionHandle batch, rows;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(queries, 0), c->Dim(index, 0), &batch));
      TF_RETURN_IF_ERROR(c->Merge(batch, c->Dim(values, 0), &batch));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(queries, 1), c->Dim(index, 1), &rows));
      c->set_output(0, c->MakeShape({batch, rows, c->Dim(index, 2)}));
      return Status();
    });

REGISTER_OP("CocosnetCandidateScoresGrad")
    .Input("grad: T")
    .Input("queries: T")
    .Input("values: T")
    .Input("index: int32")
    .Output("grad_queries: T")
    .Output("grad_values: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(2));
      return Status();
    });

// Shapes of queries [B, M, C], values [B, N, C] and index [B, M, K], checked against
// each other, and every index checked to lie in [0, N): a gather out of range would read
// another image's row or beyond the buffer.
struct Dims {
  int64_t batch, rows, count, channels, candidates;
};

static Status CheckInputs(const Tensor& queries, const Tensor& values, const Tensor& index, Dims* dims) {
  if (queries.dims() != 3 || values.dims() != 3 || index.dims() != 3) {
    return InvalidArgument("CocosnetCandidateScores: queries, values and index must have rank 3, got ",
                           queries.shape().DebugString(), ", ", values.shape().DebugString(), ", ",
                           index.shape().DebugString());
  }
  *dims = {queries.dim_size(0), queries.dim_size(1), values.dim_size(1), queries.dim_size(2), index.dim_size(2)};
  if (values.dim_size(0) != dims->batch || index.dim_size(0) != dims->batch || index.dim_size(1) != dims->rows ||
      values.dim_size(2) != dims->channels) {
    return InvalidArgument("CocosnetCandidateScores: queries [B, M, C], values [B, N, C], index [B, M, K] "
                           "disagree: ", queries.shape().DebugString(), ", ", values.shape().DebugString(), ", ",
                           index.shape().DebugString());
  }
  const int32_t* flat = index.flat<int32_t>().data();
  const int64_t total = index.NumElements();
  for (int64_t i = 0; i < total; ++i) {
    if (flat[i] < 0 || flat[i] >= dims->count) {
      return InvalidArgument("CocosnetCandidateScores: index ", flat[i], " at flat position ", i,
                             " is outside [0, ", dims->count, ")");
    }
  }
  return Status();
}

template <typename T>
static inline T Dot(const T* a, const T* b, int64_t n) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < n; ++c) sum += a[c] * b[c];
  return sum;
}

template <typename T>
class CandidateScoresOp : public OpKernel {
 public:
  explicit CandidateScoresOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& queries = context->input(0);
    const Tensor& values = context->input(1);
    const Tensor& index = context->input(2);
    Dims d;
    OP_REQUIRES_OK(context, CheckInputs(queries, values, index, &d));
    Tensor* scores = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({d.batch, d.rows, d.candidates}), &scores));
    const T* q = queries.flat<T>().data();
    const T* v = values.flat<T>().data();
    const int32_t* idx = index.flat<int32_t>().data();
    T* out = scores->flat<T>().data();
    auto rows = [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const T* value_rows = v + (r / d.rows) * d.count * d.channels;
        for (int64_t k = 0; k < d.candidates; ++k) {
          out[r * d.candidates + k] =
              Dot(q + r * d.channels, value_rows + int64_t{idx[r * d.candidates + k]} * d.channels, d.channels);
        }
      }
    };
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    tensorflow::Shard(workers->NumThreads(), workers, d.batch * d.rows, d.candidates * d.channels * 2, rows);
  }
};

template <typename T>
class CandidateScoresGradOp : public OpKernel {
 public:
  explicit CandidateScoresGradOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& grad = context->input(0);
    const Tensor& queries = context->input(1);
    const Tensor& values = context->input(2);
    const Tensor& index = context->input(3);
    Dims d;
    OP_REQUIRES_OK(context, CheckInputs(queries, values, index, &d));
    OP_REQUIRES(context, grad.shape() == index.shape(),
                InvalidArgument("CocosnetCandidateScoresGrad: grad ", grad.shape().DebugString(),
                                " must have the shape of index ", index.shape().DebugString()));
    Tensor* grad_queries = nullptr;
    Tensor* grad_values = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, queries.shape(), &grad_queries));
    OP_REQUIRES_OK(context, context->allocate_output(1, values.shape(), &grad_values));
    const T* g = grad.flat<T>().data();
    const T* q = queries.flat<T>().data();
    const T* v = values.flat<T>().data();
    const int32_t* idx = index.flat<int32_t>().data();
    T* dq = grad_queries->flat<T>().data();
    T* dv = grad_values->flat<T>().data();
    const int64_t C = d.channels, K = d.candidates;
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;

    // d queries[b, m] = sum_k grad[b, m, k] values[b, index[b, m, k]]: rows are independent
    auto query_rows = [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        T* row = dq + r * C;
        for (int64_t c = 0; c < C; ++c) row[c] = 0;
        const T* value_rows = v + (r / d.rows) * d.count * C;
        for (int64_t k = 0; k < K; ++k) {
          const T weight = g[r * K + k];
          const T* value = value_rows + int64_t{idx[r * K + k]} * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) row[c] += weight * value[c];
        }
      }
    };
    tensorflow::Shard(workers->NumThreads(), workers, d.batch * d.rows, K * C * 2, query_rows);

    // d values[b, n] = sum over (m, k) with index n of grad[b, m, k] queries[b, m]: a
    // scatter-add, so the work is split by (image, block of channels), which no two
    // shards share, instead of by rows, which collide
    constexpr int64_t kBlock = 8;
    const int64_t blocks = (C + kBlock - 1) / kBlock;
    std::fill(dv, dv + values.NumElements(), T(0));
    auto channel_blocks = [&](int64_t begin, int64_t end) {
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t b = unit / blocks;
        const int64_t c0 = (unit % blocks) * kBlock;
        const int64_t width = std::min(kBlock, C - c0);
        T* value_grads = dv + b * d.count * C + c0;
        for (int64_t m = 0; m < d.rows; ++m) {
          const int64_t r = b * d.rows + m;
          const T* query = q + r * C + c0;
          for (int64_t k = 0; k < K; ++k) {
            const T weight = g[r * K + k];
            T* target = value_grads + int64_t{idx[r * K + k]} * C;
            for (int64_t c = 0; c < width; ++c) target[c] += weight * query[c];
          }
        }
      }
    };
    tensorflow::Shard(workers->NumThreads(), workers, d.batch * blocks, d.rows * K * kBlock * 2, channel_blocks);
  }
};

#define REGISTER(T)                                                                                            \
  REGISTER_KERNEL_BUILDER(Name("CocosnetCandidateScores").Device(DEVICE_CPU).TypeConstraint<T>("T"),          \
                          CandidateScoresOp<T>);                                                               \
  REGISTER_KERNEL_BUILDER(Name("CocosnetCandidateScoresGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),      \
                          CandidateScoresGradOp<T>);
REGISTER(float)
REGISTER(double)
#undef REGISTER

}  // namespace cocosnet
