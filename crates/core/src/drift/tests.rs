//! Reference values from scipy 1.17.1 (numpy 2), computed once with the snippets in the
//! comments; every value is matched to 1e-6.

use super::*;

const TOL: f64 = 1e-6;

fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "got {got:e}, scipy says {want:e}"
    );
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn incomplete_gamma_matches_scipy() {
    // from scipy import special
    // [special.gammainc(a, x) for a, x in [(0.5,0.1),(3.0,2.5),(10.0,12.0),(2.5,30.0),(100.0,90.0)]]
    // [special.gammaincc(a, x) for ...the same pairs]
    let pairs = [
        (0.5, 0.1),
        (3.0, 2.5),
        (10.0, 12.0),
        (2.5, 30.0),
        (100.0, 90.0),
    ];
    let p = [
        0.34527915398142317,
        0.45618688411667035,
        0.7576078383294875,
        0.9999999999878454,
        0.15822098918643007,
    ];
    let q = [
        0.6547208460185768,
        0.5438131158833297,
        0.24239216167051245,
        1.2154569777183007e-11,
        0.84177901081357,
    ];
    for (i, (a, x)) in pairs.into_iter().enumerate() {
        close(gamma_p(a, x), p[i]);
        close(gamma_q(a, x), q[i]);
    }
    // The tail keeps its relative digits, which 1 - P could not.
    let tail = gamma_q(2.5, 30.0);
    assert!(
        (tail / 1.2154569777183007e-11 - 1.0).abs() < 1e-9,
        "{tail:e}"
    );
}

#[test]
fn chi_square_and_normal_tails_match_scipy() {
    // [stats.chi2.sf(x, k) for x, k in [(3.84,1),(7.5,3),(25.0,4),(80.0,10)]]
    let chi = [
        (3.84, 1.0, 0.05004352124870519),
        (7.5, 3.0, 0.0575584519726364),
        (25.0, 4.0, 5.0309817823062075e-05),
        (80.0, 10.0, 5.020464318829132e-13),
    ];
    for (x, k, want) in chi {
        close(chi_square_sf(x, k), want);
    }
    // [stats.norm.sf(z) for z in [0.0, 1.0, 1.96, -0.5, 4.2]]
    let normal = [
        (0.0, 0.5),
        (1.0, 0.15865525393145707),
        (1.96, 0.024997895148220435),
        (-0.5, 0.6914624612740131),
        (4.2, 1.334574901590631e-05),
    ];
    for (z, want) in normal {
        close(normal_sf(z), want);
    }
}

#[test]
fn label_statistics_match_scipy() {
    // r = [120, 80, 50, 10]; c = [90, 95, 40, 30]
    // stats.chi2_contingency(np.array([r, c]), correction=False) -> 16.6355640546817, 0.0008397902200508381, dof 3
    // jensenshannon(r, c, base=2) -> 0.15477211892992188
    // psi with eps 1e-4: sum((c-r)*log(c/r)) on proportions -> 0.13729063178783446
    let r = counts(&[("a", 120), ("b", 80), ("c", 50), ("d", 10)]);
    let c = counts(&[("a", 90), ("b", 95), ("c", 40), ("d", 30)]);
    let chi = chi_square_homogeneity(&r, &c);
    close(chi.statistic, 16.6355640546817);
    close(chi.p_value, 0.0008397902200508381);
    close(js_distance(&r, &c), 0.15477211892992188);
    close(psi(&r, &c), 0.13729063178783446);

    // A label the reference never gave: r2 = [30, 0, 5]; c2 = [20, 7, 8]
    // chi2_contingency(..., correction=False) -> 9.692307692307693, 0.007858544670151702, dof 2
    // jensenshannon(r2, c2, base=2) -> 0.35769888405651207; psi -> 1.6755536007715723
    let r2 = counts(&[("a", 30), ("c", 5)]);
    let c2 = counts(&[("a", 20), ("b", 7), ("c", 8)]);
    let chi = chi_square_homogeneity(&r2, &c2);
    close(chi.statistic, 9.692307692307693);
    close(chi.p_value, 0.007858544670151702);
    close(js_distance(&r2, &c2), 0.35769888405651207);
    close(psi(&r2, &c2), 1.6755536007715723);
}

#[test]
fn identical_or_empty_label_samples_show_no_drift() {
    let r = counts(&[("a", 10), ("b", 30)]);
    let same = counts(&[("a", 20), ("b", 60)]);
    let chi = chi_square_homogeneity(&r, &same);
    close(chi.statistic, 0.0);
    close(chi.p_value, 1.0);
    close(js_distance(&r, &same), 0.0);
    close(psi(&r, &same), 0.0);
    let empty = BTreeMap::new();
    assert_eq!(chi_square_homogeneity(&r, &empty).p_value, 1.0);
    assert_eq!(js_distance(&r, &empty), 0.0);
    assert_eq!(psi(&empty, &r), 0.0);
}

/// The deterministic samples the scipy snippets build the same way.
fn sample(len: u64, mul: u64, add: u64, modulus: u64, offset: u64) -> Vec<u64> {
    (0..len)
        .map(|i| (i * mul + add) % modulus + offset)
        .collect()
}

#[test]
fn kolmogorov_smirnov_matches_scipy_exact() {
    // a = [(i*37+11)%53+20 for i in range(300)]; b = [(i*29+5)%61+22 for i in range(250)]
    // stats.ks_2samp(a, b) -> 0.164, 0.001139460082146887 (method auto: exact)
    let ks = ks_two_sample(&sample(300, 37, 11, 53, 20), &sample(250, 29, 5, 61, 22));
    close(ks.statistic, 0.164);
    close(ks.p_value, 0.001139460082146887);
    // equal sizes: a as above for range(400); b = [(i*41+3)%57+21 for i in range(400)]
    // -> 0.0875, 0.09352461409425458
    let ks = ks_two_sample(&sample(400, 37, 11, 53, 20), &sample(400, 41, 3, 57, 21));
    close(ks.statistic, 0.0875);
    close(ks.p_value, 0.09352461409425458);
    // ks_2samp([1..8], [5..13]) -> 0.5555555555555556, 0.0785684903331962
    let ks = ks_two_sample(&[1, 2, 3, 4, 5, 6, 7, 8], &[5, 6, 7, 8, 9, 10, 11, 12, 13]);
    close(ks.statistic, 0.5555555555555556);
    close(ks.p_value, 0.0785684903331962);
    // the size the store samples: a = [(i*7+1)%23 for i in range(2000)];
    // b = [(i*5+2)%24 for i in range(1800)] -> 0.041666666666666664, 0.07211851071520904
    let ks = ks_two_sample(&sample(2000, 7, 1, 23, 0), &sample(1800, 5, 2, 24, 0));
    close(ks.statistic, 0.041666666666666664);
    close(ks.p_value, 0.07211851071520904);
}

#[test]
fn kolmogorov_smirnov_of_equal_samples_is_quiet() {
    let a = sample(500, 37, 11, 53, 20);
    let ks = ks_two_sample(&a, &a);
    assert_eq!(ks.statistic, 0.0);
    assert_eq!(ks.p_value, 1.0);
    assert_eq!(ks_two_sample(&a, &[]).p_value, 1.0);
}

#[test]
fn kolmogorov_limit_matches_scipy() {
    // [stats.kstwobign.sf(x) for x in [0.5, 0.9, 1.0, 1.36, 2.0]]
    let want = [
        (0.5, 0.9639452436648751),
        (0.9, 0.3927307079406543),
        (1.0, 0.26999967167735456),
        (1.36, 0.049485876755377876),
        (2.0, 0.0006709252557796953),
    ];
    for (x, p) in want {
        close(kolmogorov_sf(x), p);
    }
}

#[test]
fn two_proportion_z_matches_the_pooled_test() {
    // p = (x1+x2)/(n1+n2); z = (x2/n2 - x1/n1)/sqrt(p*(1-p)*(1/n1+1/n2)); 2*stats.norm.sf(abs(z))
    // (20,1000,35,1000) -> 2.0509973975708147, 0.04026720018183343
    // (5,200,4,210) -> -0.4111628339690002, 0.6809531386938328
    let t = two_proportion_z(20, 1000, 35, 1000);
    close(t.statistic, 2.0509973975708147);
    close(t.p_value, 0.04026720018183343);
    let t = two_proportion_z(5, 200, 4, 210);
    close(t.statistic, -0.4111628339690002);
    close(t.p_value, 0.6809531386938328);
    assert_eq!(two_proportion_z(0, 100, 0, 100).p_value, 1.0);
    assert_eq!(two_proportion_z(1, 0, 1, 10).p_value, 1.0);
}

#[test]
fn unseen_words_count_occurrences_and_skip_numbers() {
    let vocabulary = vocabulary(["Refund my card", "the app crashes"]);
    let (unseen, total) = unseen_words(&vocabulary, ["refund THE invoice 4412", "card, card!"]);
    assert_eq!((unseen, total), (1, 5));
}
