//! The statistics of `cargo xtask bench`: figures that may be missing (never NaN), medians,
//! ratios paired by round with an interval named for what it is, and the client-bound flag.

use serde_json::{Value, json};

/// A measured figure, or why it could not be measured. Built with [`measured`], so a value is
/// always finite: a missing figure prints `n/a (why)` and is `null` in JSON, never NaN.
pub(super) type Figure = Result<f64, String>;

/// `value` as a figure if it is finite; otherwise missing, because of `why`.
pub(super) fn measured(value: f64, why: &str) -> Figure {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(why.to_string())
    }
}

/// A table cell: the value with `decimals` decimals, or `n/a (why)`.
pub(super) fn cell(figure: &Figure, decimals: usize) -> String {
    match figure {
        Ok(value) => format!("{value:.decimals$}"),
        Err(why) => format!("n/a ({why})"),
    }
}

/// A figure in `results.json`: the number, or `null` when it is missing.
pub(super) fn to_json(figure: &Figure) -> Value {
    match figure {
        Ok(value) if value.is_finite() => json!(value),
        _ => Value::Null,
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 0 => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
        _ => Some(sorted[mid]),
    }
}

/// The median of the figures that were measured; if none was, the first reason why not.
pub(super) fn median_of<'a>(figures: impl IntoIterator<Item = &'a Figure>) -> Figure {
    let mut values = Vec::new();
    let mut why = None;
    for figure in figures {
        match figure {
            Ok(value) => values.push(*value),
            Err(reason) => {
                why.get_or_insert_with(|| reason.clone());
            }
        }
    }
    median(&values).ok_or_else(|| why.unwrap_or_else(|| "no run".to_string()))
}

/// Below this many rounds the spread of a median is given as the range of the rounds: a
/// bootstrap of 5 values only ever resamples them, so its "95% interval" would be the range
/// under another name.
pub(super) const BOOTSTRAP_MIN_ROUNDS: usize = 10;

/// What an [`Interval`]'s bounds are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spread {
    /// The smallest and largest of the rounds (fewer than [`BOOTSTRAP_MIN_ROUNDS`]).
    Range,
    /// A bootstrap 95% interval of the median (2,000 resamples, fixed seed).
    Bootstrap95,
}

impl Spread {
    /// How many rounds give which spread.
    pub(super) fn for_rounds(rounds: usize) -> Spread {
        if rounds >= BOOTSTRAP_MIN_ROUNDS {
            Spread::Bootstrap95
        } else {
            Spread::Range
        }
    }

    /// The spread's name in a table heading.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Spread::Range => "[range of the rounds]",
            Spread::Bootstrap95 => "[bootstrap 95% interval]",
        }
    }

    fn json_name(self) -> &'static str {
        match self {
            Spread::Range => "range",
            Spread::Bootstrap95 => "bootstrap95",
        }
    }
}

/// The median of per-round values with their spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Interval {
    pub(super) median: f64,
    pub(super) low: f64,
    pub(super) high: f64,
    pub(super) spread: Spread,
    /// How many values (rounds) it summarises.
    pub(super) rounds: usize,
}

impl Interval {
    /// The median of the finite `values` and their spread ([`Spread::for_rounds`]); `None` if
    /// there is no finite value.
    pub(super) fn of(values: &[f64]) -> Option<Interval> {
        let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let center = median(&values)?;
        let spread = Spread::for_rounds(values.len());
        let (low, high) = match spread {
            Spread::Range => (
                values.iter().copied().fold(f64::INFINITY, f64::min),
                values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
            Spread::Bootstrap95 => bootstrap95(&values),
        };
        Some(Interval {
            median: center,
            low,
            high,
            spread,
            rounds: values.len(),
        })
    }

    /// `1.02 [0.95,1.10]`.
    pub(super) fn cell(&self) -> String {
        format!("{:.2} [{:.2},{:.2}]", self.median, self.low, self.high)
    }

    pub(super) fn to_json(self) -> Value {
        json!({
            "median": self.median, "low": self.low, "high": self.high,
            "interval": self.spread.json_name(), "rounds": self.rounds,
        })
    }
}

/// A bootstrap 95% interval of the median of `values` (2,000 resamples, fixed seed, so a run
/// is reproducible from its samples).
fn bootstrap95(values: &[f64]) -> (f64, f64) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut medians: Vec<f64> = (0..2_000)
        .filter_map(|_| {
            let resample: Vec<f64> = (0..values.len())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    values[(seed % values.len() as u64) as usize]
                })
                .collect();
            median(&resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (
        medians[medians.len() * 25 / 1000],
        medians[medians.len() * 975 / 1000],
    )
}

/// `mine / base` for each round in which both were measured (and `base` is not zero).
pub(super) fn paired_ratios(mine: &[Figure], base: &[Figure]) -> Vec<f64> {
    mine.iter()
        .zip(base)
        .filter_map(|(m, b)| match (m, b) {
            (Ok(m), Ok(b)) if *b != 0.0 => Some(m / b),
            _ => None,
        })
        .filter(|r| r.is_finite())
        .collect()
}

/// Above this share of the measured phase on the CPU, the load generator's one thread was the
/// bottleneck, not the server.
pub(super) const CLIENT_BOUND_SHARE: f64 = 0.9;

/// Was a closed-loop round client-bound: the load generator's thread busy more than
/// [`CLIENT_BOUND_SHARE`] of the measured phase? The open loop spins by design and never is;
/// with no figures to judge by, a round is not flagged.
pub(super) fn client_bound(open_loop: bool, client_cpu_ns: &Figure, elapsed_ns: &Figure) -> bool {
    match (open_loop, client_cpu_ns, elapsed_ns) {
        (false, Ok(cpu), Ok(elapsed)) if *elapsed > 0.0 => cpu / elapsed > CLIENT_BOUND_SHARE,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts_and_of_nothing() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn a_median_skips_missing_figures_and_says_why_when_all_are() {
        let figures = [Ok(1.0), Err("perf".to_string()), Ok(3.0)];
        assert_eq!(median_of(&figures), Ok(2.0));
        let none = [Err("no perf".to_string()), Err("later".to_string())];
        assert_eq!(median_of(&none), Err("no perf".to_string()));
        assert_eq!(median_of(&[]), Err("no run".to_string()));
    }

    #[test]
    fn a_missing_figure_is_null_in_json_and_n_a_in_the_table_never_nan() {
        let missing = measured(f64::NAN, "no requests");
        assert_eq!(missing, Err("no requests".to_string()));
        assert_eq!(to_json(&missing), Value::Null);
        assert_eq!(cell(&missing, 2), "n/a (no requests)");
        assert_eq!(measured(f64::INFINITY, "x"), Err("x".to_string()));
        assert_eq!(to_json(&measured(1.5, "x")), json!(1.5));
        assert_eq!(cell(&Ok(1.234), 1), "1.2");
        let text = serde_json::to_string(&json!({ "f": to_json(&missing) })).unwrap();
        assert_eq!(text, r#"{"f":null}"#);
    }

    #[test]
    fn under_ten_rounds_the_interval_is_the_range_of_the_rounds() {
        let interval = Interval::of(&[1.1, 0.9, 1.0, 1.3, 0.95]).expect("values");
        assert_eq!(interval.spread, Spread::Range);
        assert_eq!(
            (interval.median, interval.low, interval.high),
            (1.0, 0.9, 1.3)
        );
        assert_eq!(interval.rounds, 5);
        assert_eq!(interval.to_json()["interval"], "range");
        assert!(Spread::Range.describe().contains("range"));
    }

    #[test]
    fn at_ten_rounds_the_interval_is_a_bootstrap_inside_the_range_around_the_median() {
        let values: Vec<f64> = (0..10).map(|i| 1.0 + f64::from(i) / 10.0).collect();
        let interval = Interval::of(&values).expect("values");
        assert_eq!(interval.spread, Spread::Bootstrap95);
        assert!((interval.median - 1.45).abs() < 1e-9);
        assert!(interval.low >= 1.0 && interval.low <= interval.median);
        assert!(interval.high <= 1.9 && interval.high >= interval.median);
        // Narrower than the range: the extremes are rarely a resample's median.
        assert!(interval.high - interval.low < 0.9);
        assert_eq!(interval.to_json()["interval"], "bootstrap95");
        // Same values, same interval: the seed is fixed.
        assert_eq!(Interval::of(&values), Some(interval));
    }

    #[test]
    fn an_interval_ignores_non_finite_values_and_needs_one() {
        assert_eq!(Interval::of(&[]), None);
        assert_eq!(Interval::of(&[f64::NAN]), None);
        let one = Interval::of(&[2.0, f64::INFINITY]).expect("one finite value");
        assert_eq!(
            (one.median, one.low, one.high, one.rounds),
            (2.0, 2.0, 2.0, 1)
        );
    }

    #[test]
    fn ratios_pair_rounds_where_both_were_measured() {
        let mine = [Ok(2.0), Err("failed".to_string()), Ok(3.0), Ok(1.0)];
        let base = [Ok(1.0), Ok(1.0), Err("failed".to_string()), Ok(0.0)];
        assert_eq!(paired_ratios(&mine, &base), [2.0]);
    }

    #[test]
    fn a_closed_loop_round_is_client_bound_above_ninety_percent_of_the_phase() {
        let elapsed = Ok(1_000.0);
        assert!(client_bound(false, &Ok(950.0), &elapsed));
        assert!(!client_bound(false, &Ok(900.0), &elapsed));
        assert!(!client_bound(false, &Ok(500.0), &elapsed));
        // The open loop spins by design.
        assert!(!client_bound(true, &Ok(1_000.0), &elapsed));
        // Nothing to judge by.
        assert!(!client_bound(false, &Err("no cpu".into()), &elapsed));
        assert!(!client_bound(false, &Ok(1.0), &Ok(0.0)));
    }
}
