// decode(p, q0, q1): the decode kernel for p.rows (1–8) over panels [q0, q1), the row count
// made the template argument of the decode_range<M> defined before the include. Included by
// each target region of nf4_packed.cc that has a decode kernel (AVX2, AVX-512, AVX-512 VBMI).
// Not a header: no include guard on purpose.
static void decode(const Problem& p, int64_t q0, int64_t q1) {
  switch (p.rows) {
    case 1: return decode_range<1>(p, q0, q1);
    case 2: return decode_range<2>(p, q0, q1);
    case 3: return decode_range<3>(p, q0, q1);
    case 4: return decode_range<4>(p, q0, q1);
    case 5: return decode_range<5>(p, q0, q1);
    case 6: return decode_range<6>(p, q0, q1);
    case 7: return decode_range<7>(p, q0, q1);
    default: return decode_range<8>(p, q0, q1);
  }
}
