//! Choosing the next token from the logits: the most likely one, or a draw at a temperature,
//! optionally from the nucleus (top-p), by a generator seeded per request so that a seed
//! reproduces an answer.
//!
//! The arithmetic is that of the sampler the embedded model's answers were pinned with
//! (`crate::pinned`): probabilities are `exp(l / t - max)` over their sum, the sum taken in 32
//! interleaved partial sums; the draw is `rand`'s `WeightedIndex` over `StdRng` seeded with
//! the request's seed. So a seeded request draws the same tokens as before.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::LocalError;

/// How one request samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SamplingParams {
    pub(crate) temperature: f64,
    pub(crate) top_p: Option<f64>,
    pub(crate) seed: u64,
}

impl SamplingParams {
    /// A sampler for these parameters: greedy at temperature 0 (or below).
    pub(crate) fn sampler(self) -> Sampler {
        let mode = if self.temperature <= 0.0 {
            Mode::Greedy
        } else {
            match self.top_p {
                Some(p) if p > 0.0 && p < 1.0 => Mode::TopP {
                    p: p as f32,
                    temperature: self.temperature,
                },
                _ => Mode::All {
                    temperature: self.temperature,
                },
            }
        };
        Sampler {
            rng: StdRng::seed_from_u64(self.seed),
            mode,
        }
    }
}

enum Mode {
    Greedy,
    All { temperature: f64 },
    TopP { p: f32, temperature: f64 },
}

/// Picks tokens for one request.
pub(crate) struct Sampler {
    rng: StdRng,
    mode: Mode,
}

impl Sampler {
    /// The next token after `logits`.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> Result<u32, LocalError> {
        if logits.is_empty() {
            return Err(LocalError::Inference("no logits to sample from".to_owned()));
        }
        match self.mode {
            Mode::Greedy => Ok(argmax(logits)),
            Mode::All { temperature } => self.draw(&softmax(logits, temperature)),
            Mode::TopP { p, temperature } => {
                let mut probs = softmax(logits, temperature);
                nucleus(&mut probs, p);
                self.draw(&probs)
            }
        }
    }

    fn draw(&mut self, probs: &[f32]) -> Result<u32, LocalError> {
        let index = WeightedIndex::new(probs)
            .map_err(|e| LocalError::Inference(format!("cannot sample the next token: {e}")))?;
        Ok(index.sample(&mut self.rng) as u32)
    }
}

/// The index of the largest logit; the first of equal ones (a NaN first logit stays chosen).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if logits[best] < l {
            best = i;
        }
    }
    best as u32
}

/// `softmax(logits / temperature)`. At a temperature so small that the scaled logits leave
/// `f32` (`1e-45`), the distribution is its limit: all the weight on the largest logit.
fn softmax(logits: &[f32], temperature: f64) -> Vec<f32> {
    let scale = (1.0 / temperature) as f32;
    let mut probs: Vec<f32> = logits.iter().map(|l| l * scale).collect();
    if probs
        .iter()
        .zip(logits)
        .any(|(p, l)| l.is_finite() && !p.is_finite())
    {
        let mut one_hot = vec![0.0; logits.len()];
        one_hot[argmax(logits) as usize] = 1.0;
        return one_hot;
    }
    let max = probs.iter().copied().fold(probs[0], f32::max);
    for p in &mut probs {
        *p = (*p - max).exp();
    }
    let sum = interleaved_sum(&probs);
    for p in &mut probs {
        *p /= sum;
    }
    probs
}

/// The sum of `xs` in 32 interleaved partial sums (`xs[i]` into sum `i % 32`), which are then
/// added pairwise; the remainder past a multiple of 32 is added last, one by one.
fn interleaved_sum(xs: &[f32]) -> f32 {
    let mut sums = [0f32; 32];
    let chunks = xs.chunks_exact(32);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (s, x) in sums.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    // Partial sums 0..8, 8..16, 16..24, 24..32 are four vectors of eight: (v0 + v1) + (v2 + v3),
    // then its halves added, then the four lanes as (a0 + a1) + (a2 + a3).
    let v: [f32; 8] =
        std::array::from_fn(|l| (sums[l] + sums[8 + l]) + (sums[16 + l] + sums[24 + l]));
    let a: [f32; 4] = std::array::from_fn(|l| v[l] + v[l + 4]);
    let mut total = (a[0] + a[1]) + (a[2] + a[3]);
    for x in rest {
        total += x;
    }
    total
}

/// Zero every probability outside the nucleus: the most likely tokens, in order, until their
/// running total reaches `p` (ties in order of id).
fn nucleus(probs: &mut [f32], p: f32) {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
    let mut total = 0.0;
    for i in order {
        if total >= p {
            probs[i] = 0.0;
        } else {
            total += probs[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f64, top_p: Option<f64>, seed: u64) -> Sampler {
        SamplingParams {
            temperature,
            top_p,
            seed,
        }
        .sampler()
    }

    #[test]
    fn greedy_takes_the_first_of_equal_maxima() {
        let mut s = sampler(0.0, Some(0.5), 1);
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, -1.0]).ok(), Some(1));
        assert_eq!(s.sample(&[f32::NEG_INFINITY, -5.0]).ok(), Some(1));
        assert!(s.sample(&[]).is_err());
    }

    #[test]
    fn softmax_sums_to_one_and_sharpens_when_cold() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32).collect();
        let warm = softmax(&logits, 1.0);
        assert!((warm.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let cold = softmax(&logits, 0.1);
        assert!(cold[6] > warm[6] && cold[0] < warm[0]);
    }

    #[test]
    fn interleaved_sum_adds_everything() {
        for n in [0, 1, 31, 32, 33, 100, 49_152] {
            let xs: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
            let want: f32 = xs.iter().sum();
            assert_eq!(interleaved_sum(&xs), want, "{n} values");
        }
    }

    #[test]
    fn the_nucleus_keeps_the_likeliest_until_p() {
        let mut probs = vec![0.1, 0.5, 0.15, 0.25];
        nucleus(&mut probs, 0.7);
        assert_eq!(probs, [0.0, 0.5, 0.0, 0.25]);
    }

    #[test]
    fn a_seed_reproduces_its_draws_and_top_p_stays_in_the_nucleus() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let draws = |seed| {
            let mut s = sampler(1.0, None, seed);
            (0..20).map(|_| s.sample(&logits).ok()).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        let mut probs = softmax(&logits, 0.5);
        nucleus(&mut probs, 0.5);
        let mut s = sampler(0.5, Some(0.5), 9);
        for _ in 0..50 {
            let t = s.sample(&logits).expect("a token") as usize;
            assert!(probs[t] > 0.0, "{t} is outside the nucleus");
        }
    }

    #[test]
    fn a_temperature_too_small_for_f32_draws_the_likeliest_token() {
        let logits = [1.0, 7.5, -3.0, 0.0, 7.0];
        for temperature in [1e-45, f64::from(f32::MIN_POSITIVE), 1e-300] {
            let mut s = sampler(temperature, None, 5);
            assert_eq!(s.sample(&logits).ok(), Some(1), "at {temperature}");
            let mut s = sampler(temperature, Some(0.9), 5);
            assert_eq!(s.sample(&logits).ok(), Some(1), "top-p at {temperature}");
        }
    }

    #[test]
    fn all_masked_logits_are_an_error_not_a_panic() {
        let mut s = sampler(1.0, None, 0);
        assert!(s.sample(&[f32::NEG_INFINITY; 4]).is_err());
    }
}
