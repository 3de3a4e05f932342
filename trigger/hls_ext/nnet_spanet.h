// SPA-Net extension layers for hls4ml (io_parallel): jet-wise dense, masked self-attention with a table
// softmax, and the symmetric triplet scoring with its argmax. Each function is bit-exact with its kernel in
// the design interpreter (trigger/design/spanet.py): accumulators (acc_t types) are wide enough to be exact,
// and every rounding happens in a cast to a type declared with AP_RND, AP_SAT in the layer's config struct.
#ifndef NNET_SPANET_H_
#define NNET_SPANET_H_

#include "nnet_common.h"

namespace nnet {

// out[j][o] = out_t(relu?(sum_i in_t(x[j][i]) * w[i][o] + b[o]))
template <class data_T, class res_T, typename CONFIG_T>
void fx_dense(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], res_T res[CONFIG_T::n_items * CONFIG_T::n_out],
              typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
              typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=biases complete
Items:
    for (unsigned j = 0; j < CONFIG_T::n_items; j++) {
        #pragma HLS UNROLL
        typename CONFIG_T::in_t x[CONFIG_T::n_in];
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
            #pragma HLS UNROLL
            x[i] = data[j * CONFIG_T::n_in + i];
        }
    Outputs:
        for (unsigned o = 0; o < CONFIG_T::n_out; o++) {
            #pragma HLS UNROLL
            typename CONFIG_T::acc_t acc = biases[o];
            for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
                #pragma HLS UNROLL
                acc += x[i] * weights[i * CONFIG_T::n_out + o];
            }
            if (CONFIG_T::relu && acc < 0) acc = 0;
            res[j * CONFIG_T::n_out + o] = (typename CONFIG_T::out_t)acc;
        }
    }
}

// Projection of all items: y[j][o] = y_T(b[o] + sum_i x[j][i] * w[i][o]) with acc_T exact.
template <class x_T, class y_T, class w_T, class b_T, class acc_T, unsigned N, unsigned D_IN, unsigned D_OUT>
void fx_project(x_T x[N][D_IN], y_T y[N][D_OUT], w_T w[D_IN * D_OUT], b_T b[D_OUT]) {
    #pragma HLS INLINE
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned o = 0; o < D_OUT; o++) {
            #pragma HLS UNROLL
            acc_T acc = b[o];
            for (unsigned i = 0; i < D_IN; i++) {
                #pragma HLS UNROLL
                acc += x[j][i] * w[i * D_OUT + o];
            }
            y[j][o] = (y_T)acc;
        }
    }
}

// One-head self-attention over n items of width d (head width h) with key mask and residual connection.
template <class data_T, class mask_T, class res_T, typename CONFIG_T>
void fx_self_attention(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], mask_T mask[CONFIG_T::n_items],
                       res_T res[CONFIG_T::n_items * CONFIG_T::n_in],
                       typename CONFIG_T::weight_t wq[CONFIG_T::n_in * CONFIG_T::n_head],
                       typename CONFIG_T::bias_t bq[CONFIG_T::n_head],
                       typename CONFIG_T::weight_t wk[CONFIG_T::n_in * CONFIG_T::n_head],
                       typename CONFIG_T::bias_t bk[CONFIG_T::n_head],
                       typename CONFIG_T::weight_t wv[CONFIG_T::n_in * CONFIG_T::n_head],
                       typename CONFIG_T::bias_t bv[CONFIG_T::n_head],
                       typename CONFIG_T::weight_t wo[CONFIG_T::n_head * CONFIG_T::n_in],
                       typename CONFIG_T::bias_t bo[CONFIG_T::n_in],
                       typename CONFIG_T::exp_table_t exp_table[CONFIG_T::exp_size],
                       typename CONFIG_T::inv_table_t inv_table[CONFIG_T::inv_size]) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    const unsigned H = CONFIG_T::n_head;
    typedef typename CONFIG_T::in_t in_t;
    typedef typename CONFIG_T::qkv_t qkv_t;
    typedef typename CONFIG_T::score_t score_t;

    in_t x[N][D];
    #pragma HLS ARRAY_PARTITION variable=x complete dim=0
    bool valid[N];
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        valid[j] = mask[j] > 0;
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            x[j][i] = data[j * D + i];
        }
    }
    qkv_t q[N][H], k[N][H], v[N][H];
    #pragma HLS ARRAY_PARTITION variable=q complete dim=0
    #pragma HLS ARRAY_PARTITION variable=k complete dim=0
    #pragma HLS ARRAY_PARTITION variable=v complete dim=0
    fx_project<in_t, qkv_t, typename CONFIG_T::weight_t, typename CONFIG_T::bias_t, typename CONFIG_T::proj_acc_t,
               N, D, H>(x, q, wq, bq);
    fx_project<in_t, qkv_t, typename CONFIG_T::weight_t, typename CONFIG_T::bias_t, typename CONFIG_T::proj_acc_t,
               N, D, H>(x, k, wk, bk);
    fx_project<in_t, qkv_t, typename CONFIG_T::weight_t, typename CONFIG_T::bias_t, typename CONFIG_T::proj_acc_t,
               N, D, H>(x, v, wv, bv);

Queries:
    for (unsigned a = 0; a < N; a++) {
        #pragma HLS UNROLL
        score_t s[N];
        for (unsigned b = 0; b < N; b++) {
            #pragma HLS UNROLL
            typename CONFIG_T::score_acc_t acc = 0;
            for (unsigned c = 0; c < H; c++) {
                #pragma HLS UNROLL
                acc += q[a][c] * k[b][c];
            }
            s[b] = (score_t)acc;
        }
        // Row maximum over valid keys (0 when there is none).
        bool any = false;
        score_t row_max = 0;
        for (unsigned b = 0; b < N; b++) {
            #pragma HLS UNROLL
            if (valid[b] && (!any || s[b] > row_max)) {
                row_max = s[b];
                any = true;
            }
        }
        typename CONFIG_T::exp_table_t e[N];
        typename CONFIG_T::sum_t total = 0;
        for (unsigned b = 0; b < N; b++) {
            #pragma HLS UNROLL
            typename CONFIG_T::dist_t dist = row_max - s[b];
            int index = (dist * (1 << CONFIG_T::exp_frac)).to_int();
            if (index > (int)CONFIG_T::exp_size - 1) index = CONFIG_T::exp_size - 1;
            e[b] = valid[b] ? exp_table[index] : (typename CONFIG_T::exp_table_t)0;
            total += e[b];
        }
        int inv_index = 0;
        if (total >= 1) {
            inv_index = ((total - 1) * (1 << CONFIG_T::inv_frac)).to_int();
            if (inv_index > (int)CONFIG_T::inv_size - 1) inv_index = CONFIG_T::inv_size - 1;
        }
        typename CONFIG_T::inv_table_t inv = inv_table[inv_index];
        typename CONFIG_T::attn_t attn[N];
        for (unsigned b = 0; b < N; b++) {
            #pragma HLS UNROLL
            attn[b] = e[b] * inv;
        }
        typename CONFIG_T::ctx_t ctx[H];
        for (unsigned c = 0; c < H; c++) {
            #pragma HLS UNROLL
            typename CONFIG_T::ctx_acc_t acc = 0;
            for (unsigned b = 0; b < N; b++) {
                #pragma HLS UNROLL
                acc += attn[b] * v[b][c];
            }
            ctx[c] = acc;
        }
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            typename CONFIG_T::out_acc_t acc = bo[i];
            acc += x[a][i];
            for (unsigned c = 0; c < H; c++) {
                #pragma HLS UNROLL
                acc += ctx[c] * wo[c * D + i];
            }
            res[a * D + i] = (typename CONFIG_T::out_t)acc;
        }
    }
}

// First maximum (strict '>' scan in (b, q, q') order) over the valid triplets that share no jet with
// (xi, xj, xk); pass xi = -1 to exclude nothing. Returns false when no triplet is allowed.
template <typename CONFIG_T>
bool fx_triplet_scan(typename CONFIG_T::score_t scores[CONFIG_T::n_items][CONFIG_T::n_items][CONFIG_T::n_items],
                     bool ok[CONFIG_T::n_items][CONFIG_T::n_items][CONFIG_T::n_items], int xi, int xj, int xk,
                     typename CONFIG_T::score_t &best, int &bi, int &bj, int &bk) {
    #pragma HLS INLINE
    const int N = CONFIG_T::n_items;
    bool found = false;
    for (int i = 0; i < N; i++) {
        #pragma HLS UNROLL
        for (int j = 0; j < N; j++) {
            #pragma HLS UNROLL
            for (int k = j + 1; k < N; k++) {
                #pragma HLS UNROLL
                bool shares = i == xi || i == xj || i == xk || j == xi || j == xj || j == xk || k == xi ||
                              k == xj || k == xk;
                if (!ok[i][j][k] || (xi >= 0 && shares)) continue;
                if (!found || scores[i][j][k] > best) {
                    found = true;
                    best = scores[i][j][k];
                    bi = i;
                    bj = j;
                    bk = k;
                }
            }
        }
    }
    return found;
}

// Symmetric triplet scores S[t][i][j][k] = sum_r u[t][i][r] * pair_t(v[t][j][r] * v[t][k][r]) over valid,
// distinct triplets with j < k, then the greedy two-top decoding of spanet.greedy_assign:
// res = (b, q, q', score) for t = 0, 1.
template <class data_T, class mask_T, class res_T, typename CONFIG_T>
void fx_triplet_argmax(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], mask_T mask[CONFIG_T::n_items],
                       res_T res[8],
                       typename CONFIG_T::weight_t wb[2 * CONFIG_T::n_in * CONFIG_T::n_rank],
                       typename CONFIG_T::bias_t bb[2 * CONFIG_T::n_rank],
                       typename CONFIG_T::weight_t wp[2 * CONFIG_T::n_in * CONFIG_T::n_rank],
                       typename CONFIG_T::bias_t bp[2 * CONFIG_T::n_rank]) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    const unsigned R = CONFIG_T::n_rank;
    typedef typename CONFIG_T::in_t in_t;
    typedef typename CONFIG_T::factor_t factor_t;
    typedef typename CONFIG_T::pair_t pair_t;
    typedef typename CONFIG_T::score_t score_t;

    in_t x[N][D];
    #pragma HLS ARRAY_PARTITION variable=x complete dim=0
    bool valid[N];
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        valid[j] = mask[j] > 0;
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            x[j][i] = data[j * D + i];
        }
    }
    bool ok[N][N][N];
    #pragma HLS ARRAY_PARTITION variable=ok complete dim=0
    for (unsigned i = 0; i < N; i++) {
        #pragma HLS UNROLL
        for (unsigned j = 0; j < N; j++) {
            #pragma HLS UNROLL
            for (unsigned k = 0; k < N; k++) {
                #pragma HLS UNROLL
                ok[i][j][k] = valid[i] && valid[j] && valid[k] && i != j && i != k && j < k;
            }
        }
    }
    score_t scores[2][N][N][N];
    #pragma HLS ARRAY_PARTITION variable=scores complete dim=0
Tops:
    for (unsigned t = 0; t < 2; t++) {
        #pragma HLS UNROLL
        factor_t u[N][R], v[N][R];
        #pragma HLS ARRAY_PARTITION variable=u complete dim=0
        #pragma HLS ARRAY_PARTITION variable=v complete dim=0
        fx_project<in_t, factor_t, typename CONFIG_T::weight_t, typename CONFIG_T::bias_t,
                   typename CONFIG_T::proj_acc_t, N, D, R>(x, u, wb + t * D * R, bb + t * R);
        fx_project<in_t, factor_t, typename CONFIG_T::weight_t, typename CONFIG_T::bias_t,
                   typename CONFIG_T::proj_acc_t, N, D, R>(x, v, wp + t * D * R, bp + t * R);
        for (unsigned i = 0; i < N; i++) {
            #pragma HLS UNROLL
            for (unsigned j = 0; j < N; j++) {
                #pragma HLS UNROLL
                for (unsigned k = j + 1; k < N; k++) {
                    #pragma HLS UNROLL
                    if (i == j || i == k) continue;
                    typename CONFIG_T::score_acc_t acc = 0;
                    for (unsigned r = 0; r < R; r++) {
                        #pragma HLS UNROLL
                        pair_t p = v[j][r] * v[k][r];
                        acc += u[i][r] * p;
                    }
                    scores[t][i][j][k] = acc;
                }
            }
        }
    }
    score_t best[2];
    int bi[2] = {-1, -1}, bj[2] = {-1, -1}, bk[2] = {-1, -1};
    bool found[2];
    for (unsigned t = 0; t < 2; t++) {
        #pragma HLS UNROLL
        best[t] = 0;
        found[t] = fx_triplet_scan<CONFIG_T>(scores[t], ok, -1, -1, -1, best[t], bi[t], bj[t], bk[t]);
    }
    // The better top keeps its triplet; the other re-chooses among the triplets disjoint from it.
    const int w = (found[1] && (!found[0] || best[1] > best[0])) ? 1 : 0;
    const int l = 1 - w;
    score_t second = 0;
    int si = -1, sj = -1, sk = -1;
    if (found[w] && fx_triplet_scan<CONFIG_T>(scores[l], ok, bi[w], bj[w], bk[w], second, si, sj, sk)) {
        best[l] = second;
        bi[l] = si;
        bj[l] = sj;
        bk[l] = sk;
    }
    res_T lowest;
    lowest.range() = 0;
    lowest[res_T::width - 1] = 1;
    for (unsigned t = 0; t < 2; t++) {
        #pragma HLS UNROLL
        res[4 * t + 0] = bi[t];
        res[4 * t + 1] = bj[t];
        res[4 * t + 2] = bk[t];
        res[4 * t + 3] = found[t] ? (res_T)best[t] : lowest;
    }
}

} // namespace nnet

#endif
