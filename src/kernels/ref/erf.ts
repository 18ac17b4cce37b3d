// erf(x) to about 1 ulp in double precision: the rational approximations of FreeBSD's
// msun s_erf.c (as in musl), ported to TypeScript. gelu_erf and its backward need it
// exactly, because f64 gradient checks run through them.
//
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this software is freely granted,
// provided that this notice is preserved.

const erx = 0.8450629115104675;
// erf on [0, 0.84375)
const efx8 = 1.0270333367641007;
const pp0 = 0.12837916709551256;
const pp1 = -0.3250421072470015;
const pp2 = -0.02848174957559851;
const pp3 = -0.005770270296489442;
const pp4 = -0.000023763016656650163;
const qq1 = 0.39791722395915535;
const qq2 = 0.0650222499887673;
const qq3 = 0.005081306281875766;
const qq4 = 0.00013249473800432164;
const qq5 = -0.000003960228278775368;
// erf on [0.84375, 1.25)
const pa0 = -0.0023621185607526594;
const pa1 = 0.41485611868374833;
const pa2 = -0.3722078760357013;
const pa3 = 0.31834661990116175;
const pa4 = -0.11089469428239668;
const pa5 = 0.035478304325618236;
const pa6 = -0.002166375594868791;
const qa1 = 0.10642088040084423;
const qa2 = 0.540397917702171;
const qa3 = 0.07182865441419627;
const qa4 = 0.12617121980876164;
const qa5 = 0.01363708391202905;
const qa6 = 0.011984499846799107;
// erfc on [1.25, 1/0.35)
const ra0 = -0.009864944034847148;
const ra1 = -0.6938585727071818;
const ra2 = -10.558626225323291;
const ra3 = -62.375332450326006;
const ra4 = -162.39666946257347;
const ra5 = -184.60509290671104;
const ra6 = -81.2874355063066;
const ra7 = -9.814329344169145;
const sa1 = 19.651271667439257;
const sa2 = 137.65775414351904;
const sa3 = 434.56587747522923;
const sa4 = 645.3872717332679;
const sa5 = 429.00814002756783;
const sa6 = 108.63500554177944;
const sa7 = 6.570249770319282;
const sa8 = -0.0604244152148581;
// erfc on [1/0.35, 6)
const rb0 = -0.0098649429247001;
const rb1 = -0.799283237680523;
const rb2 = -17.757954917754752;
const rb3 = -160.63638485582192;
const rb4 = -637.5664433683896;
const rb5 = -1025.0951316110772;
const rb6 = -483.5191916086514;
const sb1 = 30.33806074348246;
const sb2 = 325.7925129965739;
const sb3 = 1536.729586084437;
const sb4 = 3199.8582195085955;
const sb5 = 2553.0504064331644;
const sb6 = 474.52854120695537;
const sb7 = -22.44095244658582;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LO = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;

/** x with the low 32 bits of its mantissa cleared, so z·z below is exact. */
function truncLo(x: number): number {
  f64[0] = x;
  u32[LO] = 0;
  return f64[0];
}

/** erfc(ax) for 1.25 ≤ ax < 6. */
function erfcTail(ax: number): number {
  const s = 1 / (ax * ax);
  let R: number;
  let S: number;
  if (ax < 1 / 0.35) {
    R = ra0 + s * (ra1 + s * (ra2 + s * (ra3 + s * (ra4 + s * (ra5 + s * (ra6 + s * ra7))))));
    S = 1 + s * (sa1 + s * (sa2 + s * (sa3 + s * (sa4 + s * (sa5 + s * (sa6 + s * (sa7 + s * sa8)))))));
  } else {
    R = rb0 + s * (rb1 + s * (rb2 + s * (rb3 + s * (rb4 + s * (rb5 + s * rb6)))));
    S = 1 + s * (sb1 + s * (sb2 + s * (sb3 + s * (sb4 + s * (sb5 + s * (sb6 + s * sb7))))));
  }
  const z = truncLo(ax);
  return (Math.exp(-z * z - 0.5625) * Math.exp((z - ax) * (z + ax) + R / S)) / ax;
}

/** The error function, accurate to about one ulp in double precision. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return x;
  const ax = Math.abs(x);
  if (ax < 0.84375) {
    if (ax < 3.725290298461914e-9) return 0.125 * (8 * x + efx8 * x);
    const z = x * x;
    const r = pp0 + z * (pp1 + z * (pp2 + z * (pp3 + z * pp4)));
    const s = 1 + z * (qq1 + z * (qq2 + z * (qq3 + z * (qq4 + z * qq5))));
    return x + x * (r / s);
  }
  let y: number;
  if (ax < 1.25) {
    const s = ax - 1;
    const P = pa0 + s * (pa1 + s * (pa2 + s * (pa3 + s * (pa4 + s * (pa5 + s * pa6)))));
    const Q = 1 + s * (qa1 + s * (qa2 + s * (qa3 + s * (qa4 + s * (qa5 + s * qa6)))));
    y = erx + P / Q;
  } else if (ax < 6) {
    y = 1 - erfcTail(ax);
  } else {
    y = 1;
  }
  return x < 0 ? -y : y;
}
