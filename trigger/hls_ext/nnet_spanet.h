// SPA-Net extension layers for hls4ml (io_parallel): jet-wise dense, masked self-attention with a table
// softmax, and the symmetric triplet scoring with its argmax. Each function is bit-exact with its kernel in
// the design interpreter (trigger/design/spanet.py): accumulators (acc_t types) are wide enough to be exact,
// and every rounding happens in a cast to a type declared with AP_RND, AP_SAT in the layer's config struct.
//
// Resource sharing, CONFIG_T::reuse_factor = R: every multiplying stage (the projections, the attention's
// scores, softmax weights and context, each over all its heads, the triplet head's pair and triplet products)
// is its own pipeline of interval R whose multipliers are limited to ceil(products / R), as in hls4ml's
// dense_latency, so each multiplier serves R products per event and the layer takes an event every R cycles.
// R changes no arithmetic: the accumulators are exact, so the order of a sum does not matter.
#ifndef NNET_SPANET_H_
#define NNET_SPANET_H_

#include "nnet_common.h"

namespace nnet {

// Multipliers of a stage of `products` multiplications shared over `reuse` cycles (at least one).
constexpr unsigned fx_multipliers(unsigned products, unsigned reuse) {
    return products > reuse ? (products + reuse - 1) / reuse : 1;
}

// acc[m][p] += sum_k a[m][k] * b[k * P + p], in the exact accumulator type acc_T.
template <class a_T, class b_T, class acc_T, unsigned M, unsigned K, unsigned P>
void fx_mac(a_T a[M][K], b_T b[K * P], acc_T acc[M][P]) {
    #pragma HLS INLINE
    for (unsigned m = 0; m < M; m++) {
        #pragma HLS UNROLL
        for (unsigned p = 0; p < P; p++) {
            #pragma HLS UNROLL
            acc_T sum = acc[m][p];
            for (unsigned k = 0; k < K; k++) {
                #pragma HLS UNROLL
                sum += a[m][k] * b[k * P + p];
            }
            acc[m][p] = sum;
        }
    }
}

// Projection by constant weights, acc[j][o] += sum_i x[j][i] * w[i * D_OUT + o] (acc holds the bias, or the
// bias and a residual): a stage at interval R. Multiplications by zero weights are removed, so the N items
// times the NZ non-zero weights set the multipliers.
template <class x_T, class w_T, class acc_T, unsigned N, unsigned D_IN, unsigned D_OUT, unsigned R, unsigned NZ>
void fx_project(x_T x[N][D_IN], w_T w[D_IN * D_OUT], acc_T acc[N][D_OUT]) {
    #pragma HLS PIPELINE II=R
    #pragma HLS function_instantiate variable=w
    const unsigned limit = fx_multipliers(N * NZ, R);
    #pragma HLS ALLOCATION operation instances=mul limit=limit
    fx_mac<x_T, w_T, acc_T, N, D_IN, D_OUT>(x, w, acc);
}

// G products of two variable matrices, acc[g][m][p] += sum_k a[g][m][k] * b[g][k * P + p] (one per attention
// head): one stage at interval R sharing its multipliers over all G.
template <class a_T, class b_T, class acc_T, unsigned G, unsigned M, unsigned K, unsigned P, unsigned R>
void fx_matmul(a_T a[G][M][K], b_T b[G][K * P], acc_T acc[G][M][P]) {
    #pragma HLS PIPELINE II=R
    const unsigned limit = fx_multipliers(G * M * K * P, R);
    #pragma HLS ALLOCATION operation instances=mul limit=limit
    for (unsigned g = 0; g < G; g++) {
        #pragma HLS UNROLL
        fx_mac<a_T, b_T, acc_T, M, K, P>(a[g], b[g], acc[g]);
    }
}

// y[g][m][p] = y_T(e[g][m][p] * s[g][m]), each row scaled by its own factor: one stage at interval R for all
// G matrices.
template <class e_T, class s_T, class y_T, unsigned G, unsigned M, unsigned P, unsigned R>
void fx_scale_rows(e_T e[G][M][P], s_T s[G][M], y_T y[G][M][P]) {
    #pragma HLS PIPELINE II=R
    const unsigned limit = fx_multipliers(G * M * P, R);
    #pragma HLS ALLOCATION operation instances=mul limit=limit
    for (unsigned g = 0; g < G; g++) {
        #pragma HLS UNROLL
        for (unsigned m = 0; m < M; m++) {
            #pragma HLS UNROLL
            for (unsigned p = 0; p < P; p++) {
                #pragma HLS UNROLL
                y[g][m][p] = e[g][m][p] * s[g][m];
            }
        }
    }
}

// out[j][o] = out_t(relu?(sum_i in_t(x[j][i]) * w[i][o] + b[o]))
template <class data_T, class res_T, typename CONFIG_T>
void fx_dense(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], res_T res[CONFIG_T::n_items * CONFIG_T::n_out],
              typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
              typename CONFIG_T::bias_t biases[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=biases complete
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    const unsigned O = CONFIG_T::n_out;
    typedef typename CONFIG_T::acc_t acc_t;

    typename CONFIG_T::in_t x[N][D];
    acc_t acc[N][O];
    #pragma HLS ARRAY_PARTITION variable=x complete dim=0
    #pragma HLS ARRAY_PARTITION variable=acc complete dim=0
Items:
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            x[j][i] = data[j * D + i];
        }
        for (unsigned o = 0; o < O; o++) {
            #pragma HLS UNROLL
            acc[j][o] = biases[o];
        }
    }
    fx_project<typename CONFIG_T::in_t, typename CONFIG_T::weight_t, acc_t, N, D, O, CONFIG_T::reuse_factor,
               CONFIG_T::n_nonzero>(x, weights, acc);
Outputs:
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned o = 0; o < O; o++) {
            #pragma HLS UNROLL
            acc_t sum = acc[j][o];
            if (CONFIG_T::relu && sum < 0) sum = 0;
            res[j * O + o] = (typename CONFIG_T::out_t)sum;
        }
    }
}

// Self-attention over n items of width d with key mask and residual connection: `heads` heads of width h, each
// with its own q, k, v columns (head g's are columns g*h to (g+1)*h) and its own table softmax; their contexts
// are concatenated (head 0 first) into the one output projection wo.
template <class data_T, class mask_T, class res_T, typename CONFIG_T>
void fx_self_attention(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], mask_T mask[CONFIG_T::n_items],
                       res_T res[CONFIG_T::n_items * CONFIG_T::n_in],
                       typename CONFIG_T::weight_t wq[CONFIG_T::n_in * CONFIG_T::heads * CONFIG_T::n_head],
                       typename CONFIG_T::bias_t bq[CONFIG_T::heads * CONFIG_T::n_head],
                       typename CONFIG_T::weight_t wk[CONFIG_T::n_in * CONFIG_T::heads * CONFIG_T::n_head],
                       typename CONFIG_T::bias_t bk[CONFIG_T::heads * CONFIG_T::n_head],
                       typename CONFIG_T::weight_t wv[CONFIG_T::n_in * CONFIG_T::heads * CONFIG_T::n_head],
                       typename CONFIG_T::bias_t bv[CONFIG_T::heads * CONFIG_T::n_head],
                       typename CONFIG_T::weight_t wo[CONFIG_T::heads * CONFIG_T::n_head * CONFIG_T::n_in],
                       typename CONFIG_T::bias_t bo[CONFIG_T::n_in],
                       typename CONFIG_T::exp_table_t exp_table[CONFIG_T::exp_size],
                       typename CONFIG_T::inv_table_t inv_table[CONFIG_T::inv_size]) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    const unsigned G = CONFIG_T::heads;
    const unsigned H = CONFIG_T::n_head;
    const unsigned C = G * H; // q, k, v columns of all heads
    const unsigned R = CONFIG_T::reuse_factor;
    typedef typename CONFIG_T::in_t in_t;
    typedef typename CONFIG_T::weight_t weight_t;
    typedef typename CONFIG_T::proj_acc_t proj_acc_t;
    typedef typename CONFIG_T::qkv_t qkv_t;
    typedef typename CONFIG_T::score_t score_t;
    typedef typename CONFIG_T::exp_table_t exp_table_t;
    typedef typename CONFIG_T::inv_table_t inv_table_t;

    in_t x[N][D];
    #pragma HLS ARRAY_PARTITION variable=x complete dim=0
    bool valid[N];
    proj_acc_t qa[N][C], ka[N][C], va[N][C];
    #pragma HLS ARRAY_PARTITION variable=qa complete dim=0
    #pragma HLS ARRAY_PARTITION variable=ka complete dim=0
    #pragma HLS ARRAY_PARTITION variable=va complete dim=0
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        valid[j] = mask[j] > 0;
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            x[j][i] = data[j * D + i];
        }
        for (unsigned c = 0; c < C; c++) {
            #pragma HLS UNROLL
            qa[j][c] = bq[c];
            ka[j][c] = bk[c];
            va[j][c] = bv[c];
        }
    }
    fx_project<in_t, weight_t, proj_acc_t, N, D, C, R, CONFIG_T::nonzero_q>(x, wq, qa);
    fx_project<in_t, weight_t, proj_acc_t, N, D, C, R, CONFIG_T::nonzero_k>(x, wk, ka);
    fx_project<in_t, weight_t, proj_acc_t, N, D, C, R, CONFIG_T::nonzero_v>(x, wv, va);
    // per head: q, and k transposed and v flattened as the right operands of the products below
    qkv_t q[G][N][H], kt[G][H * N], v[G][N * H];
    #pragma HLS ARRAY_PARTITION variable=q complete dim=0
    #pragma HLS ARRAY_PARTITION variable=kt complete dim=0
    #pragma HLS ARRAY_PARTITION variable=v complete dim=0
    typename CONFIG_T::score_acc_t sa[G][N][N];
    #pragma HLS ARRAY_PARTITION variable=sa complete dim=0
    for (unsigned g = 0; g < G; g++) {
        #pragma HLS UNROLL
        for (unsigned j = 0; j < N; j++) {
            #pragma HLS UNROLL
            for (unsigned c = 0; c < H; c++) {
                #pragma HLS UNROLL
                q[g][j][c] = (qkv_t)qa[j][g * H + c];
                kt[g][c * N + j] = (qkv_t)ka[j][g * H + c];
                v[g][j * H + c] = (qkv_t)va[j][g * H + c];
            }
            for (unsigned b = 0; b < N; b++) {
                #pragma HLS UNROLL
                sa[g][j][b] = 0;
            }
        }
    }
    fx_matmul<qkv_t, qkv_t, typename CONFIG_T::score_acc_t, G, N, H, N, R>(q, kt, sa);

    exp_table_t e[G][N][N];
    inv_table_t inv[G][N];
    #pragma HLS ARRAY_PARTITION variable=e complete dim=0
    #pragma HLS ARRAY_PARTITION variable=inv complete dim=0
Queries:
    for (unsigned g = 0; g < G; g++) {
        #pragma HLS UNROLL
        for (unsigned a = 0; a < N; a++) {
            #pragma HLS UNROLL
            score_t s[N];
            for (unsigned b = 0; b < N; b++) {
                #pragma HLS UNROLL
                s[b] = (score_t)sa[g][a][b];
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
            typename CONFIG_T::sum_t total = 0;
            for (unsigned b = 0; b < N; b++) {
                #pragma HLS UNROLL
                typename CONFIG_T::dist_t dist = row_max - s[b];
                int index = (dist * (1 << CONFIG_T::exp_frac)).to_int();
                if (index > (int)CONFIG_T::exp_size - 1) index = CONFIG_T::exp_size - 1;
                e[g][a][b] = valid[b] ? exp_table[index] : (exp_table_t)0;
                total += e[g][a][b];
            }
            int inv_index = 0;
            if (total >= 1) {
                inv_index = ((total - 1) * (1 << CONFIG_T::inv_frac)).to_int();
                if (inv_index > (int)CONFIG_T::inv_size - 1) inv_index = CONFIG_T::inv_size - 1;
            }
            inv[g][a] = inv_table[inv_index];
        }
    }
    typename CONFIG_T::attn_t attn[G][N][N];
    #pragma HLS ARRAY_PARTITION variable=attn complete dim=0
    fx_scale_rows<exp_table_t, inv_table_t, typename CONFIG_T::attn_t, G, N, N, R>(e, inv, attn);

    typename CONFIG_T::ctx_acc_t ca[G][N][H];
    #pragma HLS ARRAY_PARTITION variable=ca complete dim=0
    for (unsigned g = 0; g < G; g++) {
        #pragma HLS UNROLL
        for (unsigned a = 0; a < N; a++) {
            #pragma HLS UNROLL
            for (unsigned c = 0; c < H; c++) {
                #pragma HLS UNROLL
                ca[g][a][c] = 0;
            }
        }
    }
    fx_matmul<typename CONFIG_T::attn_t, qkv_t, typename CONFIG_T::ctx_acc_t, G, N, N, H, R>(attn, v, ca);

    // the heads' contexts concatenated, then one output projection with the bias and the residual
    typename CONFIG_T::ctx_t ctx[N][C];
    typename CONFIG_T::out_acc_t oa[N][D];
    #pragma HLS ARRAY_PARTITION variable=ctx complete dim=0
    #pragma HLS ARRAY_PARTITION variable=oa complete dim=0
    for (unsigned a = 0; a < N; a++) {
        #pragma HLS UNROLL
        for (unsigned g = 0; g < G; g++) {
            #pragma HLS UNROLL
            for (unsigned c = 0; c < H; c++) {
                #pragma HLS UNROLL
                ctx[a][g * H + c] = ca[g][a][c];
            }
        }
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            oa[a][i] = bo[i];
            oa[a][i] += x[a][i];
        }
    }
    fx_project<typename CONFIG_T::ctx_t, weight_t, typename CONFIG_T::out_acc_t, N, C, D, R, CONFIG_T::nonzero_o>(
        ctx, wo, oa);
    for (unsigned a = 0; a < N; a++) {
        #pragma HLS UNROLL
        for (unsigned i = 0; i < D; i++) {
            #pragma HLS UNROLL
            res[a * D + i] = (typename CONFIG_T::out_t)oa[a][i];
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

// The joint decoding (spanet.joint_positions): for top h = 0 then 1, its CONFIG_T::candidates best valid
// triplets in turn (repeated first maxima), each paired with the other top's best triplet sharing no jet with
// it; the pair with the strictly highest exact sum replaces each top's own best (best, bi, bj, bk on entry).
// With one score head shared by both tops only the pass of top 0 is built: top 1's would repeat its pairs.
template <typename CONFIG_T>
void fx_triplet_joint(typename CONFIG_T::score_t
                          scores[CONFIG_T::score_heads][CONFIG_T::n_items][CONFIG_T::n_items][CONFIG_T::n_items],
                      bool ok[CONFIG_T::n_items][CONFIG_T::n_items][CONFIG_T::n_items],
                      typename CONFIG_T::score_t best[2], int bi[2], int bj[2], int bk[2]) {
    #pragma HLS INLINE
    const int N = CONFIG_T::n_items;
    typedef typename CONFIG_T::score_t score_t;
    typedef ap_fixed<score_t::width + 1, score_t::iwidth + 1> sum_t;
    const int H = CONFIG_T::score_heads;
    bool have = false;
    sum_t best_sum = 0;
    for (int h = 0; h < H; h++) {
        #pragma HLS UNROLL
        bool left[N][N][N];
        #pragma HLS ARRAY_PARTITION variable=left complete dim=0
        for (int i = 0; i < N; i++) {
            #pragma HLS UNROLL
            for (int j = 0; j < N; j++) {
                #pragma HLS UNROLL
                for (int k = 0; k < N; k++) {
                    #pragma HLS UNROLL
                    left[i][j][k] = ok[i][j][k];
                }
            }
        }
        for (unsigned c = 0; c < CONFIG_T::candidates; c++) {
            #pragma HLS UNROLL
            score_t s = 0, s2 = 0;
            int i = -1, j = -1, k = -1, i2 = -1, j2 = -1, k2 = -1;
            const bool exists = fx_triplet_scan<CONFIG_T>(scores[h], left, -1, -1, -1, s, i, j, k);
            for (int a = 0; a < N; a++) {
                #pragma HLS UNROLL
                for (int b = 0; b < N; b++) {
                    #pragma HLS UNROLL
                    for (int d = 0; d < N; d++) {
                        #pragma HLS UNROLL
                        if (a == i && b == j && d == k) left[a][b][d] = false;
                    }
                }
            }
            if (exists && fx_triplet_scan<CONFIG_T>(scores[H - 1 - h], ok, i, j, k, s2, i2, j2, k2)) {
                const sum_t total = (sum_t)s + (sum_t)s2;
                if (!have || total > best_sum) {
                    have = true;
                    best_sum = total;
                    best[h] = s;
                    bi[h] = i;
                    bj[h] = j;
                    bk[h] = k;
                    best[1 - h] = s2;
                    bi[1 - h] = i2;
                    bj[1 - h] = j2;
                    bk[1 - h] = k2;
                }
            }
        }
    }
}

// The address of a mass table (spanet.table_index): floor(m2 2^FRAC) clamped to [0, SIZE - 1]. The shift is
// exact in a type FRAC bits wider.
template <class m2_T, unsigned FRAC, unsigned SIZE>
unsigned fx_mass_index(m2_T m2) {
    #pragma HLS INLINE
    ap_fixed<m2_T::width + FRAC + 1, m2_T::iwidth + FRAC + 1> scaled = m2;
    scaled <<= FRAC;
    if (scaled < 0) return 0;
    if (scaled >= SIZE) return SIZE - 1;
    return scaled.to_uint();
}

// g[i][j] = E_i E_j - px_i px_j - py_i py_j - pz_i pz_j for i <= j, exact in gram_T: a stage at interval R.
template <class p_T, class gram_T, unsigned N, unsigned R>
void fx_minkowski(p_T p[N][4], gram_T g[N][N]) {
    #pragma HLS PIPELINE II=R
    const unsigned limit = fx_multipliers(N * (N + 1) / 2 * 4, R);
    #pragma HLS ALLOCATION operation instances=mul limit=limit
    for (unsigned i = 0; i < N; i++) {
        #pragma HLS UNROLL
        for (unsigned j = i; j < N; j++) {
            #pragma HLS UNROLL
            gram_T acc = p[i][0] * p[j][0];
            for (unsigned c = 1; c < 4; c++) {
                #pragma HLS UNROLL
                acc -= p[i][c] * p[j][c];
            }
            g[i][j] = acc;
        }
    }
}

// The learned mass prior (spanet.fx_mass_prior): for each triplet of the scan order (b, then q < q', b distinct
// from both), pair_table[m2(q, q')] + triplet_table[m2(b, q, q') - m2(q, q')], the masses squared exact from the
// input's (E, px, py, pz) columns column..column+3.
template <class data_T, class res_T, typename CONFIG_T>
void fx_mass_prior(data_T data[CONFIG_T::n_items * CONFIG_T::n_in],
                   res_T res[CONFIG_T::n_items * (CONFIG_T::n_items - 1) * (CONFIG_T::n_items - 2) / 2],
                   typename CONFIG_T::table_t pair_table[CONFIG_T::pair_size],
                   typename CONFIG_T::table_t triplet_table[CONFIG_T::triplet_size]) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    typedef typename CONFIG_T::gram_t gram_t;
    typedef typename CONFIG_T::pair_m2_t pair_m2_t;
    typedef typename CONFIG_T::excess_m2_t excess_m2_t;

    typename CONFIG_T::in_t p[N][4];
    #pragma HLS ARRAY_PARTITION variable=p complete dim=0
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned c = 0; c < 4; c++) {
            #pragma HLS UNROLL
            p[j][c] = data[j * D + CONFIG_T::column + c];
        }
    }
    gram_t g[N][N];
    #pragma HLS ARRAY_PARTITION variable=g complete dim=0
    fx_minkowski<typename CONFIG_T::in_t, gram_t, N, CONFIG_T::reuse_factor>(p, g);
    pair_m2_t m2[N][N];
    #pragma HLS ARRAY_PARTITION variable=m2 complete dim=0
    for (unsigned i = 0; i < N; i++) {
        #pragma HLS UNROLL
        for (unsigned j = i + 1; j < N; j++) {
            #pragma HLS UNROLL
            pair_m2_t twice = g[i][j];
            twice <<= 1;
            m2[i][j] = g[i][i] + g[j][j] + twice;
        }
    }
    unsigned m = 0;
    for (unsigned b = 0; b < N; b++) {
        #pragma HLS UNROLL
        for (unsigned q = 0; q < N; q++) {
            #pragma HLS UNROLL
            for (unsigned k = q + 1; k < N; k++) {
                #pragma HLS UNROLL
                if (b != q && b != k) {
                    excess_m2_t t = b < q ? m2[b][q] : m2[q][b];
                    t += b < k ? m2[b][k] : m2[k][b];
                    t -= g[b][b];
                    t -= g[q][q];
                    t -= g[k][k];
                    typename CONFIG_T::out_t prior = pair_table[fx_mass_index<pair_m2_t, CONFIG_T::pair_frac,
                                                                              CONFIG_T::pair_size>(m2[q][k])];
                    prior += triplet_table[fx_mass_index<excess_m2_t, CONFIG_T::triplet_frac,
                                                         CONFIG_T::triplet_size>(t)];
                    res[m] = prior;
                    m++;
                }
            }
        }
    }
}

// p[(j, k)][r] = p_T(v[j][r] * v[k][r]) for the pairs j < k in (j, k) order: a stage at interval R.
template <class v_T, class p_T, unsigned N, unsigned RANK, unsigned R>
void fx_pair_products(v_T v[N][RANK], p_T p[N * (N - 1) / 2][RANK]) {
    #pragma HLS PIPELINE II=R
    const unsigned limit = fx_multipliers(N * (N - 1) / 2 * RANK, R);
    #pragma HLS ALLOCATION operation instances=mul limit=limit
    unsigned pair = 0;
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned k = j + 1; k < N; k++) {
            #pragma HLS UNROLL
            for (unsigned r = 0; r < RANK; r++) {
                #pragma HLS UNROLL
                p[pair][r] = v[j][r] * v[k][r];
            }
            pair++;
        }
    }
}

// s[T][i][j][k] = s_T(prior[m] + sum_r u[i][r] * p[(j, k)][r]) for j < k and i distinct from both (the only
// entries the scan reads; m counts them in that order): a stage at interval R.
template <class u_T, class p_T, class prior_T, class acc_T, class s_T, unsigned N, unsigned RANK, unsigned R,
          unsigned T, unsigned H>
void fx_triplet_products(u_T u[N][RANK], p_T p[N * (N - 1) / 2][RANK], prior_T prior[N * (N - 1) * (N - 2) / 2],
                         s_T s[H][N][N][N]) {
    #pragma HLS PIPELINE II=R
    const unsigned limit = fx_multipliers(N * (N - 1) * (N - 2) / 2 * RANK, R);
    #pragma HLS ALLOCATION operation instances=mul limit=limit
    unsigned m = 0;
    for (unsigned i = 0; i < N; i++) {
        #pragma HLS UNROLL
        unsigned pair = 0;
        for (unsigned j = 0; j < N; j++) {
            #pragma HLS UNROLL
            for (unsigned k = j + 1; k < N; k++) {
                #pragma HLS UNROLL
                if (i != j && i != k) {
                    acc_T acc = prior[m];
                    m++;
                    for (unsigned r = 0; r < RANK; r++) {
                        #pragma HLS UNROLL
                        acc += u[i][r] * p[pair][r];
                    }
                    s[T][i][j][k] = acc;
                }
                pair++;
            }
        }
    }
}

// Score head T's factors u = x Wb_T + bb_T and v = x Wp_T + bp_T (NZ_B, NZ_P non-zero weights), its pair
// products and its triplet scores into scores[T]: three stages at interval reuse_factor.
template <typename CONFIG_T, unsigned T, unsigned NZ_B, unsigned NZ_P, class prior_T>
void fx_triplet_top(typename CONFIG_T::in_t x[CONFIG_T::n_items][CONFIG_T::n_in],
                    prior_T prior[CONFIG_T::n_items * (CONFIG_T::n_items - 1) * (CONFIG_T::n_items - 2) / 2],
                    typename CONFIG_T::weight_t wb[CONFIG_T::score_heads * CONFIG_T::n_in * CONFIG_T::n_rank],
                    typename CONFIG_T::bias_t bb[CONFIG_T::score_heads * CONFIG_T::n_rank],
                    typename CONFIG_T::weight_t wp[CONFIG_T::score_heads * CONFIG_T::n_in * CONFIG_T::n_rank],
                    typename CONFIG_T::bias_t bp[CONFIG_T::score_heads * CONFIG_T::n_rank],
                    typename CONFIG_T::score_t
                        scores[CONFIG_T::score_heads][CONFIG_T::n_items][CONFIG_T::n_items][CONFIG_T::n_items]) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    const unsigned RANK = CONFIG_T::n_rank;
    const unsigned R = CONFIG_T::reuse_factor;
    typedef typename CONFIG_T::weight_t weight_t;
    typedef typename CONFIG_T::proj_acc_t proj_acc_t;
    typedef typename CONFIG_T::factor_t factor_t;
    typedef typename CONFIG_T::pair_t pair_t;

    weight_t wbt[D * RANK], wpt[D * RANK];
    #pragma HLS ARRAY_PARTITION variable=wbt complete
    #pragma HLS ARRAY_PARTITION variable=wpt complete
    for (unsigned i = 0; i < D * RANK; i++) {
        #pragma HLS UNROLL
        wbt[i] = wb[T * D * RANK + i];
        wpt[i] = wp[T * D * RANK + i];
    }
    proj_acc_t ua[N][RANK], va[N][RANK];
    #pragma HLS ARRAY_PARTITION variable=ua complete dim=0
    #pragma HLS ARRAY_PARTITION variable=va complete dim=0
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned r = 0; r < RANK; r++) {
            #pragma HLS UNROLL
            ua[j][r] = bb[T * RANK + r];
            va[j][r] = bp[T * RANK + r];
        }
    }
    fx_project<typename CONFIG_T::in_t, weight_t, proj_acc_t, N, D, RANK, R, NZ_B>(x, wbt, ua);
    fx_project<typename CONFIG_T::in_t, weight_t, proj_acc_t, N, D, RANK, R, NZ_P>(x, wpt, va);
    factor_t u[N][RANK], v[N][RANK];
    #pragma HLS ARRAY_PARTITION variable=u complete dim=0
    #pragma HLS ARRAY_PARTITION variable=v complete dim=0
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        for (unsigned r = 0; r < RANK; r++) {
            #pragma HLS UNROLL
            u[j][r] = (factor_t)ua[j][r];
            v[j][r] = (factor_t)va[j][r];
        }
    }
    pair_t p[N * (N - 1) / 2][RANK];
    #pragma HLS ARRAY_PARTITION variable=p complete dim=0
    fx_pair_products<factor_t, pair_t, N, RANK, R>(v, p);
    fx_triplet_products<factor_t, pair_t, prior_T, typename CONFIG_T::score_acc_t, typename CONFIG_T::score_t, N,
                        RANK, R, T, CONFIG_T::score_heads>(u, p, prior, scores);
}

// The second score head (top 1's), built only when the tops have one each (score_heads 2).
template <typename CONFIG_T, unsigned HEADS> struct fx_second_head {
    template <class prior_T>
    static void score(typename CONFIG_T::in_t x[CONFIG_T::n_items][CONFIG_T::n_in],
                      prior_T prior[CONFIG_T::n_items * (CONFIG_T::n_items - 1) * (CONFIG_T::n_items - 2) / 2],
                      typename CONFIG_T::weight_t wb[2 * CONFIG_T::n_in * CONFIG_T::n_rank],
                      typename CONFIG_T::bias_t bb[2 * CONFIG_T::n_rank],
                      typename CONFIG_T::weight_t wp[2 * CONFIG_T::n_in * CONFIG_T::n_rank],
                      typename CONFIG_T::bias_t bp[2 * CONFIG_T::n_rank],
                      typename CONFIG_T::score_t scores[2][CONFIG_T::n_items][CONFIG_T::n_items][CONFIG_T::n_items]) {
        #pragma HLS INLINE
        fx_triplet_top<CONFIG_T, 1, CONFIG_T::nonzero_b1, CONFIG_T::nonzero_p1>(x, prior, wb, bb, wp, bp, scores);
    }
};
template <typename CONFIG_T> struct fx_second_head<CONFIG_T, 1> {
    template <class prior_T, class x_T, class w_T, class b_T, class s_T>
    static void score(x_T, prior_T, w_T, b_T, w_T, b_T, s_T) {}
};

// Symmetric triplet scores S[t][i][j][k] = sum_r u[t][i][r] * pair_t(v[t][j][r] * v[t][k][r]) over valid,
// distinct triplets with j < k (fx_triplet_top), plus the prior of each (a mass prior, in the scan order), then
// the two-top decoding of spanet.decode_positions: res = (b, q, q', score) for t = 0, 1. With score_heads 1
// both tops read head 0's scores, computed and scanned once.
template <class data_T, class mask_T, class prior_T, class res_T, typename CONFIG_T>
void fx_triplet_argmax(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], mask_T mask[CONFIG_T::n_items],
                       prior_T prior[CONFIG_T::n_items * (CONFIG_T::n_items - 1) * (CONFIG_T::n_items - 2) / 2],
                       res_T res[8],
                       typename CONFIG_T::weight_t wb[CONFIG_T::score_heads * CONFIG_T::n_in * CONFIG_T::n_rank],
                       typename CONFIG_T::bias_t bb[CONFIG_T::score_heads * CONFIG_T::n_rank],
                       typename CONFIG_T::weight_t wp[CONFIG_T::score_heads * CONFIG_T::n_in * CONFIG_T::n_rank],
                       typename CONFIG_T::bias_t bp[CONFIG_T::score_heads * CONFIG_T::n_rank]) {
    #pragma HLS INLINE
    const unsigned N = CONFIG_T::n_items;
    const unsigned D = CONFIG_T::n_in;
    typedef typename CONFIG_T::score_t score_t;

    typename CONFIG_T::in_t x[N][D];
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
    const unsigned H = CONFIG_T::score_heads;
    score_t scores[H][N][N][N];
    #pragma HLS ARRAY_PARTITION variable=scores complete dim=0
    fx_triplet_top<CONFIG_T, 0, CONFIG_T::nonzero_b0, CONFIG_T::nonzero_p0>(x, prior, wb, bb, wp, bp, scores);
    fx_second_head<CONFIG_T, H>::score(x, prior, wb, bb, wp, bp, scores);
    score_t best[2];
    int bi[2] = {-1, -1}, bj[2] = {-1, -1}, bk[2] = {-1, -1};
    bool found[2];
    for (unsigned t = 0; t < 2; t++) {
        #pragma HLS UNROLL
        best[t] = 0;
        if (t < H) { // (the index is in bounds even where the branch is dead)
            found[t] = fx_triplet_scan<CONFIG_T>(scores[t < H ? t : 0], ok, -1, -1, -1, best[t], bi[t], bj[t],
                                                 bk[t]);
        } else { // a shared head: top 1's own best is top 0's
            found[t] = found[0];
            best[t] = best[0];
            bi[t] = bi[0];
            bj[t] = bj[0];
            bk[t] = bk[0];
        }
    }
    if (CONFIG_T::candidates > 0) {
        fx_triplet_joint<CONFIG_T>(scores, ok, best, bi, bj, bk);
    } else {
        // Greedy: the better top keeps its triplet; the other re-chooses among the triplets disjoint from it.
        const int w = (found[1] && (!found[0] || best[1] > best[0])) ? 1 : 0;
        const int l = 1 - w;
        score_t second = 0;
        int si = -1, sj = -1, sk = -1;
        if (found[w] && fx_triplet_scan<CONFIG_T>(scores[H == 2 ? l : 0], ok, bi[w], bj[w], bk[w], second, si, sj,
                                                  sk)) {
            best[l] = second;
            bi[l] = si;
            bj[l] = sj;
            bk[l] = sk;
        }
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

// Without a prior: every triplet's prior is 0.
template <class data_T, class mask_T, class res_T, typename CONFIG_T>
void fx_triplet_argmax(data_T data[CONFIG_T::n_items * CONFIG_T::n_in], mask_T mask[CONFIG_T::n_items],
                       res_T res[8],
                       typename CONFIG_T::weight_t wb[CONFIG_T::score_heads * CONFIG_T::n_in * CONFIG_T::n_rank],
                       typename CONFIG_T::bias_t bb[CONFIG_T::score_heads * CONFIG_T::n_rank],
                       typename CONFIG_T::weight_t wp[CONFIG_T::score_heads * CONFIG_T::n_in * CONFIG_T::n_rank],
                       typename CONFIG_T::bias_t bp[CONFIG_T::score_heads * CONFIG_T::n_rank]) {
    #pragma HLS INLINE
    ap_uint<1> zero[CONFIG_T::n_items * (CONFIG_T::n_items - 1) * (CONFIG_T::n_items - 2) / 2];
    #pragma HLS ARRAY_PARTITION variable=zero complete
    for (unsigned m = 0; m < CONFIG_T::n_items * (CONFIG_T::n_items - 1) * (CONFIG_T::n_items - 2) / 2; m++) {
        #pragma HLS UNROLL
        zero[m] = 0;
    }
    fx_triplet_argmax<data_T, mask_T, ap_uint<1>, res_T, CONFIG_T>(data, mask, zero, res, wb, bb, wp, bp);
}

} // namespace nnet

#endif
