//! The little statistics the verdict needs: medians and the Mann-Whitney U test (ranks with ties,
//! normal approximation with tie and continuity correction, as canary judges and scipy's
//! `mannwhitneyu(..., method="asymptotic")` compute it). Written here rather than taken from a
//! crate: it is forty lines and the verdict must stay pure and dependency-free.

/// Which way the first sample is suspected to have moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// The first sample tends to be greater than the second.
    Greater,
    /// The first sample tends to be less than the second.
    Less,
    TwoSided,
}

/// The outcome of a Mann-Whitney U test of `x` against `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: how many (x, y) pairs have x > y, ties counting one half.
    pub u: f64,
    /// The standardised statistic (with continuity correction).
    pub z: f64,
    pub p_value: f64,
}

/// The median of the finite values, `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Mann-Whitney U of `x` against `y` (non-finite values left out). `None` when either side is
/// empty; a p-value of 1 when every value is tied (nothing can be said).
pub fn mann_whitney_u(x: &[f64], y: &[f64], alternative: Alternative) -> Option<MannWhitney> {
    let x: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    let y: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return None;
    }
    // Pool, sort, and give tied values the average of the ranks they span.
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let (mut rank_sum_x, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // Ranks are 1-based: positions i..j hold ranks i+1..=j.
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_x += avg_rank * pooled[i..j].iter().filter(|p| p.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let mu = n1 * n2 / 2.0;
    let nf = n as f64;
    let var = n1 * n2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 || !var.is_finite() {
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let sd = var.sqrt();
    let (z, p) = match alternative {
        Alternative::Greater => {
            let z = (u - mu - 0.5) / sd;
            (z, normal_sf(z))
        }
        Alternative::Less => {
            let z = (u - mu + 0.5) / sd;
            (z, normal_sf(-z))
        }
        Alternative::TwoSided => {
            let z = ((u - mu).abs() - 0.5) / sd;
            (z, (2.0 * normal_sf(z)).min(1.0))
        }
    };
    Some(MannWhitney {
        u,
        z,
        p_value: p.clamp(0.0, 1.0),
    })
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (W. J. Cody's rational approximations; checked against a
/// reference erfc to a relative error below 1e-13 over [-6, 20]).
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    let r = if ax < 0.5 {
        // erfc = 1 - erf for small |x|.
        const A: [f64; 5] = [
            3.161_123_743_870_565_6,
            113.864_154_151_050_16,
            377.485_237_685_302,
            3_209.377_589_138_469_4,
            0.185_777_706_184_603_15,
        ];
        const B: [f64; 4] = [
            23.601_290_952_344_122,
            244.024_637_934_444_17,
            1_282.616_526_077_372_3,
            2_844.236_833_439_171,
        ];
        let y = x * x;
        let mut num = A[4] * y;
        let mut den = y;
        for k in 0..3 {
            num = (num + A[k]) * y;
            den = (den + B[k]) * y;
        }
        let erf = x * (num + A[3]) / (den + B[3]);
        return 1.0 - erf;
    } else if ax <= 4.0 {
        const C: [f64; 9] = [
            0.564_188_496_988_670_1,
            8.883_149_794_388_376,
            66.119_190_637_141_63,
            298.635_138_197_400_1,
            881.952_221_241_769,
            1_712.047_612_634_070_7,
            2_051.078_377_826_071_6,
            1_230.339_354_797_997_2,
            2.153_115_354_744_038_3e-8,
        ];
        const D: [f64; 8] = [
            15.744_926_110_709_835,
            117.693_950_891_312_5,
            537.181_101_862_009_9,
            1_621.389_574_566_690_3,
            3_290.799_235_733_459_7,
            4_362.619_090_143_247,
            3_439.367_674_143_721_6,
            1_230.339_354_803_749_4,
        ];
        let mut num = C[8] * ax;
        let mut den = ax;
        for k in 0..7 {
            num = (num + C[k]) * ax;
            den = (den + D[k]) * ax;
        }
        let r = (num + C[7]) / (den + D[7]);
        r * (-ax * ax).exp()
    } else {
        const P: [f64; 6] = [
            0.305_326_634_961_232_36,
            0.360_344_899_949_804_4,
            0.125_781_726_111_229_26,
            0.016_083_785_148_742_275,
            6.587_491_615_298_378e-4,
            0.016_315_387_137_302_097,
        ];
        const Q: [f64; 5] = [
            2.568_520_192_289_822,
            1.872_952_849_923_460_4,
            0.527_905_102_951_428_4,
            0.060_518_341_312_441_32,
            0.002_335_204_976_268_691_8,
        ];
        let y = 1.0 / (ax * ax);
        let mut num = P[5] * y;
        let mut den = y;
        for k in 0..4 {
            num = (num + P[k]) * y;
            den = (den + Q[k]) * y;
        }
        let r = y * (num + P[4]) / (den + Q[4]);
        let r = (1.0 / std::f64::consts::PI.sqrt() - r) / ax;
        r * (-ax * ax).exp()
    };
    if x < 0.0 { 2.0 - r } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn medians() {
        let table: [(&[f64], Option<f64>); 5] = [
            (&[], None),
            (&[f64::NAN], None),
            (&[3.0, 1.0, 2.0], Some(2.0)),
            (&[4.0, 1.0, 3.0, 2.0], Some(2.5)),
            (&[1.0, f64::INFINITY, 5.0], Some(3.0)),
        ];
        for (v, want) in table {
            assert_eq!(median(v), want, "{v:?}");
        }
    }

    #[test]
    fn the_normal_tail_matches_known_values() {
        // Φ(-z) from standard tables (to the digits given there).
        let table = [
            (0.0, 0.5),
            (1.0, 0.158_655_253_931_457_05),
            (1.644_853_626_951_472_2, 0.05),
            (1.959_963_984_540_054, 0.025),
            (3.0, 0.001_349_898_031_630_094_6),
            (5.0, 2.866_515_718_791_939e-7),
            (-1.0, 0.841_344_746_068_542_9),
            (0.3, 0.382_088_577_811_047_6),
        ];
        for (z, want) in table {
            assert!(
                close(normal_sf(z), want, 1e-12),
                "sf({z}) = {}",
                normal_sf(z)
            );
        }
    }

    /// Reference values from scipy 1.17.1:
    /// `mannwhitneyu(x, y, alternative=..., method="asymptotic", use_continuity=True)`.
    #[test]
    fn mann_whitney_matches_scipy() {
        use Alternative::*;
        let table: [(&[f64], &[f64], Alternative, f64, f64); 7] = [
            (
                &[1., 2., 3., 4., 5.],
                &[6., 7., 8., 9., 10.],
                Less,
                0.0,
                0.006_092_890_177_672_406,
            ),
            // A textbook example (no ties, one-sided, just above 5%).
            (
                &[19., 22., 16., 29., 24.],
                &[20., 11., 17., 12.],
                Greater,
                17.0,
                0.055_673_443_266_570_206,
            ),
            // Ties across both samples.
            (
                &[1., 2., 2., 3., 3., 3., 4.],
                &[2., 3., 3., 4., 4., 5., 5., 6.],
                Less,
                11.0,
                0.024_942_218_489_962_94,
            ),
            // One noisy sample among steady latencies: not significant.
            (
                &[0.12, 0.11, 0.13, 0.12, 0.5, 0.12, 0.11, 0.13, 0.12],
                &[0.12, 0.11, 0.12, 0.13, 0.12, 0.11, 0.12, 0.12, 0.13, 0.11],
                Greater,
                53.0,
                0.255_549_070_074_867_27,
            ),
            // Latency doubled: significant.
            (
                &[0.21, 0.22, 0.2, 0.23, 0.25, 0.22, 0.21, 0.24],
                &[0.1, 0.11, 0.12, 0.1, 0.11, 0.12, 0.1, 0.11],
                Greater,
                64.0,
                0.000_426_116_856_386_131_6,
            ),
            (&[5., 5., 5.], &[5., 5., 5., 5.], TwoSided, 6.0, 1.0),
            (
                &[1.1, 2.2, 3.3, 4.4],
                &[0.5, 2.2, 6.0, 7.1, 8.0],
                TwoSided,
                6.5,
                0.460_558_169_227_092_8,
            ),
        ];
        for (x, y, alt, u, p) in table {
            let r = mann_whitney_u(x, y, alt).unwrap();
            assert_eq!(r.u, u, "{x:?} {y:?}");
            assert!(
                close(r.p_value, p, 1e-9),
                "{x:?} {y:?} {alt:?}: p {} want {p}",
                r.p_value
            );
        }
        assert_eq!(mann_whitney_u(&[], &[1.0], Greater), None);
        assert_eq!(mann_whitney_u(&[f64::NAN], &[1.0], Greater), None);
    }
}
