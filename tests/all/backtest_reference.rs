//! A reference computation of the SMA-crossover fixture (`agents/fixtures/sma-cross`) traded
//! through a daily paper broker, written from the rules alone so that a backtest of the fixture
//! can be checked against it.
//!
//! Each bar `t` of the run, in this order:
//! 1. the order placed at the previous close fills at this bar's open, moved against the trader
//!    by the slippage (a buy at `open·(1 + bps/1e4)`, a sell at `open·(1 − bps/1e4)`), with a
//!    commission of `qty·price·bps/1e4`;
//! 2. the equity `cash + position·close` is recorded;
//! 3. the strategy decides at the close. `fast_t` and `slow_t` are the means of the last `fast`
//!    and `slow` closes ending at `t` (history before the run included), `fast_{t−1}` and
//!    `slow_{t−1}` the same ending at `t − 1`; it needs `max(fast, slow) + 1` closes. A cross
//!    up (`fast_t > slow_t`, `fast_{t−1} ≤ slow_{t−1}`) with nothing held buys
//!    `floor(fraction·equity_t / close_t)` shares (none if below one); a cross down
//!    (`fast_t < slow_t`, `fast_{t−1} ≥ slow_{t−1}`) with shares held sells them all. An order
//!    placed at the last bar never fills.
//!
//! The figures, from the equity `E_0 … E_n` and its returns `r_t = E_t / E_{t−1} − 1`, with a
//! risk-free rate of 0: the total return `E_n / E_0 − 1`; Sharpe `mean(r) / s · √252` (`s` the
//! sample standard deviation); Sortino `mean(r) / d · √252` with
//! `d = √(Σ min(0, r_t)² / n)`; the maximum drawdown `max_t (1 − E_t / max(E_0 … E_t))`. A
//! ratio whose denominator is zero is 0.

/// One daily bar.
#[derive(Debug, Clone, PartialEq)]
pub struct RefBar {
    pub date: String,
    pub open: f64,
    pub close: f64,
}

/// What a run comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct RefRun {
    /// One point per bar of the run, at its close; the first is the starting cash.
    pub equity: Vec<f64>,
    /// Total commission.
    pub fees: f64,
    /// Total cost of the slippage: `|price − open| · qty` summed over the fills.
    pub slippage: f64,
    pub total_return: f64,
    pub sharpe: f64,
    pub sortino: f64,
    pub max_drawdown: f64,
    /// Each fill: the day, `"buy"` or `"sell"`, the quantity and the price (slippage included).
    pub fills: Vec<(String, &'static str, f64, f64)>,
}

/// Trading days in a year.
const PERIODS_PER_YEAR: f64 = 252.0;

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// `numerator / denominator`, or 0 when the denominator is 0.
fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// The SMA-crossover strategy over `bars` (the whole series, oldest first, history before the
/// run included), run from the bar at index `start` to the last one with `cash` to begin with.
#[allow(clippy::too_many_arguments)]
pub fn sma_cross(
    bars: &[RefBar],
    start: usize,
    fast: usize,
    slow: usize,
    fraction: f64,
    cash: f64,
    commission_bps: f64,
    slippage_bps: f64,
) -> RefRun {
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    let longest = fast.max(slow);
    let mut cash = cash;
    let mut position = 0.0_f64;
    let mut fees = 0.0;
    let mut slippage = 0.0;
    let mut pending: Option<(&'static str, f64)> = None;
    let mut equity = Vec::new();
    let mut fills = Vec::new();
    for (t, bar) in bars.iter().enumerate().skip(start) {
        // 1. The order placed at the previous close fills at this open.
        if let Some((side, qty)) = pending.take() {
            let price = if side == "buy" {
                bar.open * (1.0 + slippage_bps / 1e4)
            } else {
                bar.open * (1.0 - slippage_bps / 1e4)
            };
            let commission = qty * price * commission_bps / 1e4;
            fees += commission;
            slippage += (price - bar.open).abs() * qty;
            if side == "buy" {
                cash -= qty * price + commission;
                position += qty;
            } else {
                cash += qty * price - commission;
                position -= qty;
            }
            fills.push((bar.date.clone(), side, qty, price));
        }
        // 2. The equity at the close.
        let equity_t = cash + position * bar.close;
        equity.push(equity_t);
        // 3. The decision at the close, for the next bar.
        if fast == 0 || slow == 0 || t < longest {
            continue;
        }
        let fast_now = mean(&closes[t + 1 - fast..=t]);
        let slow_now = mean(&closes[t + 1 - slow..=t]);
        let fast_before = mean(&closes[t - fast..t]);
        let slow_before = mean(&closes[t - slow..t]);
        if fast_now > slow_now && fast_before <= slow_before && position == 0.0 {
            let qty = (fraction * equity_t / bar.close).floor();
            if qty >= 1.0 {
                pending = Some(("buy", qty));
            }
        } else if fast_now < slow_now && fast_before >= slow_before && position > 0.0 {
            pending = Some(("sell", position));
        }
    }
    // An order still pending was placed at the last bar: it never fills.

    let returns: Vec<f64> = equity.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let n = returns.len();
    let (mut sharpe, mut sortino) = (0.0, 0.0);
    if n > 0 {
        let mean_r = mean(&returns);
        let sample_sd = if n > 1 {
            let squares: f64 = returns.iter().map(|r| (r - mean_r).powi(2)).sum();
            (squares / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let downside = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n as f64).sqrt();
        sharpe = ratio(mean_r, sample_sd) * PERIODS_PER_YEAR.sqrt();
        sortino = ratio(mean_r, downside) * PERIODS_PER_YEAR.sqrt();
    }
    let total_return = match (equity.first(), equity.last()) {
        (Some(first), Some(last)) if *first != 0.0 => last / first - 1.0,
        _ => 0.0,
    };
    let mut peak = f64::NEG_INFINITY;
    let mut max_drawdown = 0.0_f64;
    for e in &equity {
        peak = peak.max(*e);
        if peak != 0.0 {
            max_drawdown = max_drawdown.max(1.0 - e / peak);
        }
    }
    RefRun {
        equity,
        fees,
        slippage,
        total_return,
        sharpe,
        sortino,
        max_drawdown,
        fills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bars of consecutive days from `(open, close)` pairs.
    fn series(prices: &[(f64, f64)]) -> Vec<RefBar> {
        prices
            .iter()
            .enumerate()
            .map(|(n, (open, close))| RefBar {
                date: format!("2012-01-{:02}", n + 1),
                open: *open,
                close: *close,
            })
            .collect()
    }

    fn near(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{actual} is not {expected}"
        );
    }

    fn near_all(actual: &[f64], expected: &[f64]) {
        assert_eq!(
            actual.len(),
            expected.len(),
            "{actual:?} is not {expected:?}"
        );
        for (a, e) in actual.iter().zip(expected) {
            near(*a, *e);
        }
    }

    /// One round trip with costs: fast 2, slow 3, the run from index 3, 1,200 in cash,
    /// half of it per buy, commission 10 bp, slippage 100 bp.
    ///
    /// ```text
    ///  t  open close  fast_t  slow_t   at the close
    ///  2   10   10    10      10
    ///  3   10   10    10      10       no cross (10 = 10)                 E = 1200
    ///  4   11   12    11      10.667   up (10 ≤ 10): buy ⌊600/12⌋ = 50    E = 1200
    ///  5   13   14    13      12       bought 50 at 13·1.01 = 13.13       E = 1242.8435
    ///  6   14   12    13      12.667                                      E = 1142.8435
    ///  7   11   10    11      12       down (13 ≥ 12.667): sell 50        E = 1042.8435
    ///  8   10   10    10      10.667   sold 50 at 10·0.99 = 9.9           E = 1037.3485
    ///  9   10   10    10      10       no cross (10 = 10)                 E = 1037.3485
    /// ```
    ///
    /// The buy costs 50·13.13 = 656.5 plus 0.6565 of commission, with 50·0.13 = 6.5 of
    /// slippage: cash 542.8435. The sale brings 495 less 0.495, with 50·0.1 = 5 of slippage:
    /// cash 1037.3485. Fees 1.1515, slippage 11.5, total return 1037.3485/1200 − 1 =
    /// −0.135542916…, drawdown from the 1242.8435 peak to 1037.3485: 205.495/1242.8435 =
    /// 0.165342619…
    ///
    /// Returns: 0, 42.8435/1200 = 0.0357029167, −100/1242.8435 = −0.0804606533,
    /// −100/1142.8435 = −0.0875010445, −5.495/1042.8435 = −0.0052692470, 0. Their mean is
    /// −0.0229213380, their sample deviation 0.0495590281 (Sharpe −0.4625056·√252 =
    /// −7.342052), the downside deviation √((0.0804607² + 0.0875010² + 0.0052692²)/6) =
    /// 0.0485765967 (Sortino −0.4718597·√252 = −7.490540).
    #[test]
    fn one_round_trip_with_costs() {
        let bars = series(&[
            (10.0, 10.0),
            (10.0, 10.0),
            (10.0, 10.0),
            (10.0, 10.0),
            (11.0, 12.0),
            (13.0, 14.0),
            (14.0, 12.0),
            (11.0, 10.0),
            (10.0, 10.0),
            (10.0, 10.0),
        ]);
        let run = sma_cross(&bars, 3, 2, 3, 0.5, 1200.0, 10.0, 100.0);
        near_all(
            &run.equity,
            &[
                1200.0, 1200.0, 1242.8435, 1142.8435, 1042.8435, 1037.3485, 1037.3485,
            ],
        );
        assert_eq!(run.fills.len(), 2, "{:?}", run.fills);
        assert_eq!(
            (run.fills[0].0.as_str(), run.fills[0].1),
            ("2012-01-06", "buy")
        );
        near(run.fills[0].2, 50.0);
        near(run.fills[0].3, 13.13);
        assert_eq!(
            (run.fills[1].0.as_str(), run.fills[1].1),
            ("2012-01-09", "sell")
        );
        near(run.fills[1].2, 50.0);
        near(run.fills[1].3, 9.9);
        near(run.fees, 1.1515);
        near(run.slippage, 11.5);
        near(run.total_return, 1037.3485 / 1200.0 - 1.0);
        near(run.total_return, -0.135_542_916_666_666_7);
        near(run.max_drawdown, 205.495 / 1242.8435);
        near(run.max_drawdown, 0.165_342_619_565_536_6);
        near(run.sharpe, -7.342_051_992_656_957);
        near(run.sortino, -7.490_540_415_182_592);
    }

    /// The averages reach back before the run, and an order placed at the last bar never
    /// fills. Fast 2, slow 3, the run from index 3, 1,000 in cash, half per buy, no costs.
    ///
    /// ```text
    ///  t  open close  fast_t  slow_t   at the close
    ///  3   10   12    11      10.667   up, from the history (10 ≤ 10): buy ⌊500/12⌋ = 41   E = 1000
    ///  4   12   13    12.5    11.667   bought 41 at 12: cash 508                         E = 1041
    ///  5   13    8    10.5    11       down (12.5 ≥ 11.667): sell 41, never filled       E = 836
    /// ```
    ///
    /// Returns 0.041 and 836/1041 − 1 = −0.196926033: mean −0.077963016. With two returns
    /// the sample deviation is |r₁ − r₂|/√2, so Sharpe = (r₁ + r₂)/|r₁ − r₂|·√126 =
    /// −0.155926033/0.237926033·11.224972 = −7.356342; the downside deviation is |r₂|/√2, so
    /// Sortino = (r₁ + r₂)/|r₂|·√126 = −8.887933. Total return −0.164, drawdown
    /// 205/1041 = 0.196926033.
    #[test]
    fn history_counts_and_the_last_order_never_fills() {
        let bars = series(&[
            (10.0, 10.0),
            (10.0, 10.0),
            (10.0, 10.0),
            (10.0, 12.0),
            (12.0, 13.0),
            (13.0, 8.0),
        ]);
        let run = sma_cross(&bars, 3, 2, 3, 0.5, 1000.0, 0.0, 0.0);
        near_all(&run.equity, &[1000.0, 1041.0, 836.0]);
        assert_eq!(run.fills, [("2012-01-05".to_string(), "buy", 41.0, 12.0)]);
        near(run.fees, 0.0);
        near(run.slippage, 0.0);
        near(run.total_return, -0.164);
        near(run.max_drawdown, 205.0 / 1041.0);
        let (r1, r2) = (0.041, 836.0 / 1041.0 - 1.0);
        near(run.sharpe, (r1 + r2) / (r1 - r2) * 126f64.sqrt());
        near(run.sharpe, -7.356_342_456_996_21);
        near(run.sortino, (r1 + r2) / -r2 * 126f64.sqrt());
        near(run.sortino, -8.887_932_956_542_821);
    }

    /// Too little cash for one share: the cross up places nothing, the cross down has nothing
    /// to sell, the equity stays flat and every ratio has a zero denominator.
    ///
    /// ```text
    ///  t  close  at the close
    ///  3   12    up: ⌊0.5·10/12⌋ = 0 shares, no order   E = 10
    ///  4   13                                          E = 10
    ///  5    8    down, nothing held                    E = 10
    /// ```
    #[test]
    fn no_trade_and_zero_denominators() {
        let bars = series(&[
            (10.0, 10.0),
            (10.0, 10.0),
            (10.0, 10.0),
            (10.0, 12.0),
            (12.0, 13.0),
            (13.0, 8.0),
        ]);
        let run = sma_cross(&bars, 3, 2, 3, 0.5, 10.0, 10.0, 100.0);
        assert_eq!(run.equity, [10.0, 10.0, 10.0]);
        assert!(run.fills.is_empty(), "{:?}", run.fills);
        assert_eq!((run.fees, run.slippage), (0.0, 0.0));
        assert_eq!((run.total_return, run.max_drawdown), (0.0, 0.0));
        assert_eq!((run.sharpe, run.sortino), (0.0, 0.0));
        // One return: no sample deviation. No bar at all: no figure.
        let one = sma_cross(&bars[..5], 3, 2, 3, 0.5, 10.0, 10.0, 100.0);
        assert_eq!((one.equity.len(), one.sharpe, one.sortino), (2, 0.0, 0.0));
        let none = sma_cross(&bars, bars.len(), 2, 3, 0.5, 10.0, 10.0, 100.0);
        assert!(none.equity.is_empty());
        assert_eq!((none.total_return, none.max_drawdown), (0.0, 0.0));
    }
}
