//! Performance of an equity curve and its trades: the figures a backtest and the live
//! performance tracker report. Daily bars; periods are trading days.
//!
//! With equity `E_0 … E_n` (one value per trading day) and period returns
//! `r_t = E_t / E_{t-1} − 1` for `t = 1 … n`:
//!
//! - total return `E_n / E_0 − 1`; annualised `(1 + total)^(252 / n) − 1`;
//! - volatility `s · √252`, with `s` the sample standard deviation of `r` (n − 1);
//! - the risk-free rate per period `f = (1 + rf)^(1/252) − 1` from the annual rate `rf`
//!   (default 0);
//! - Sharpe `(mean(r) − f) / s · √252`;
//! - Sortino `(mean(r) − f) / d · √252`, with the downside deviation
//!   `d = sqrt(Σ min(0, r_t − f)² / n)`;
//! - drawdown at `t`: `1 − E_t / max(E_0 … E_t)`; max drawdown is its largest value, and
//!   its duration the longest run of periods spent below a previous peak;
//! - Calmar: annualised return / max drawdown;
//! - win rate: winning closed trades / closed trades; profit factor: gross wins / gross
//!   losses; average win and average loss (a loss as a negative number);
//! - exposure: the mean of gross exposure / equity over the periods `1 … n`; turnover: traded
//!   value / mean equity.
//!
//! 252 trading days a year is the convention of US equity markets. Means and standard
//! deviations come from `statrs`.

use serde::Serialize;
use statrs::statistics::Statistics;

/// Trading days in a year.
pub const PERIODS_PER_YEAR: f64 = 252.0;

/// The account at the end of one period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub equity: f64,
    /// The sum of the absolute market values of the positions.
    pub gross_exposure: f64,
}

/// What the run paid and traded besides its equity curve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = PerformanceCosts)]
pub struct Costs {
    /// Commission paid, in dollars.
    pub fees: f64,
    /// What slippage cost, in dollars.
    pub slippage: f64,
    /// The value of every fill, in dollars.
    pub traded: f64,
    /// The realised P&L of each closed trade, in order.
    pub closed: Vec<f64>,
    /// LLM spend in dollars, and the decisions it was spent on.
    pub llm_usd: f64,
    pub decisions: u64,
}

/// The figures of one run. Returns and rates are fractions (0.1 = 10 %); money in dollars.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Metrics {
    pub periods: usize,
    pub total_return: f64,
    pub annualized_return: f64,
    pub volatility: f64,
    pub sharpe: f64,
    pub sortino: f64,
    pub calmar: f64,
    pub max_drawdown: f64,
    /// Periods, the longest spent below a previous peak.
    pub max_drawdown_periods: usize,
    pub win_rate: f64,
    pub profit_factor: f64,
    pub average_win: f64,
    pub average_loss: f64,
    pub exposure: f64,
    pub turnover: f64,
    pub fees: f64,
    pub slippage: f64,
    pub trades: usize,
    /// Dollars of LLM per decision; 0 without decisions.
    pub llm_cost_per_decision: f64,
}

/// 0 where a ratio has no denominator (no variance, no loss, no trade).
fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 || !denominator.is_finite() {
        0.0
    } else {
        numerator / denominator
    }
}

/// The metrics of `curve` (at least two points) and `costs`, with the annual risk-free rate
/// `risk_free`.
pub fn metrics(curve: &[Point], costs: &Costs, risk_free: f64) -> Metrics {
    let returns: Vec<f64> = curve
        .windows(2)
        .map(|w| ratio(w[1].equity, w[0].equity) - 1.0)
        .collect();
    let n = returns.len();
    let first = curve.first().map_or(0.0, |p| p.equity);
    let last = curve.last().map_or(0.0, |p| p.equity);
    let total_return = ratio(last, first) - 1.0;
    // An account that lost everything (or more, through short positions) lost all of it
    // per year too: the power of a negative base is not a number.
    let annualized_return = if n == 0 {
        0.0
    } else if total_return <= -1.0 {
        -1.0
    } else {
        (1.0 + total_return).powf(PERIODS_PER_YEAR / n as f64) - 1.0
    };
    let per_period_free = (1.0 + risk_free).powf(1.0 / PERIODS_PER_YEAR) - 1.0;
    let (mean, deviation) = if n >= 2 {
        (returns.iter().mean(), returns.iter().std_dev())
    } else {
        (returns.iter().copied().sum::<f64>(), 0.0)
    };
    let downside = if n == 0 {
        0.0
    } else {
        (returns
            .iter()
            .map(|r| (r - per_period_free).min(0.0).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt()
    };
    let annual = PERIODS_PER_YEAR.sqrt();
    let (max_drawdown, max_drawdown_periods) = drawdown(curve);
    let wins: Vec<f64> = costs.closed.iter().copied().filter(|p| *p > 0.0).collect();
    let losses: Vec<f64> = costs.closed.iter().copied().filter(|p| *p < 0.0).collect();
    let gross_win: f64 = wins.iter().sum();
    let gross_loss: f64 = losses.iter().sum();
    let exposure = if n == 0 {
        0.0
    } else {
        curve[1..]
            .iter()
            .map(|p| ratio(p.gross_exposure, p.equity))
            .sum::<f64>()
            / n as f64
    };
    let mean_equity = if curve.is_empty() {
        0.0
    } else {
        curve.iter().map(|p| p.equity).sum::<f64>() / curve.len() as f64
    };
    Metrics {
        periods: n,
        total_return,
        annualized_return,
        volatility: deviation * annual,
        sharpe: ratio(mean - per_period_free, deviation) * annual,
        sortino: ratio(mean - per_period_free, downside) * annual,
        calmar: ratio(annualized_return, max_drawdown),
        max_drawdown,
        max_drawdown_periods,
        win_rate: ratio(wins.len() as f64, costs.closed.len() as f64),
        profit_factor: ratio(gross_win, -gross_loss),
        average_win: ratio(gross_win, wins.len() as f64),
        average_loss: ratio(gross_loss, losses.len() as f64),
        exposure,
        turnover: ratio(costs.traded, mean_equity),
        fees: costs.fees,
        slippage: costs.slippage,
        trades: costs.closed.len(),
        llm_cost_per_decision: ratio(costs.llm_usd, costs.decisions as f64),
    }
}

/// The drawdown at each point of `equity`: `1 − E_t / max(E_0 … E_t)` (0 while the peak is
/// not positive).
pub fn drawdowns(equity: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut peak = f64::MIN;
    equity
        .into_iter()
        .map(|e| {
            peak = peak.max(e);
            if peak > 0.0 { 1.0 - e / peak } else { 0.0 }
        })
        .collect()
}

/// The largest drawdown, and the longest run of periods below a previous peak.
fn drawdown(curve: &[Point]) -> (f64, usize) {
    let mut peak = f64::MIN;
    let mut worst: f64 = 0.0;
    let (mut run, mut longest) = (0usize, 0usize);
    for point in curve {
        if point.equity >= peak {
            peak = point.equity;
            run = 0;
        } else {
            run += 1;
            longest = longest.max(run);
            worst = worst.max(1.0 - point.equity / peak);
        }
    }
    (worst, longest)
}

/// Buy and hold: all of `cash` into the first close (no costs), valued at every close.
pub fn buy_and_hold(closes: &[f64], cash: f64) -> Vec<Point> {
    let Some(first) = closes.first().copied().filter(|c| *c > 0.0) else {
        return Vec::new();
    };
    let shares = cash / first;
    closes
        .iter()
        .map(|close| Point {
            equity: shares * close,
            gross_exposure: shares * close,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An account whose equity goes below zero: every figure is still a number (JSON has no
    /// NaN; serde would write `null` where the API promises a number).
    #[test]
    fn a_wiped_out_account_has_finite_figures() {
        let m = metrics(
            &curve(&[100.0, 40.0, -20.0, -30.0, -25.0, -30.0]),
            &Costs::default(),
            0.02,
        );
        assert_eq!(m.annualized_return, -1.0);
        let figures = serde_json::to_value(&m).expect("serialise");
        for (name, value) in figures.as_object().expect("an object") {
            assert!(!value.is_null(), "{name} is not a number: {m:?}");
        }
    }

    fn curve(equity: &[f64]) -> Vec<Point> {
        equity
            .iter()
            .map(|e| Point {
                equity: *e,
                gross_exposure: e / 2.0,
            })
            .collect()
    }

    /// Every figure of a five-day curve, computed by hand from the formulas above.
    #[test]
    fn the_figures_of_a_short_curve_are_the_hand_computed_ones() {
        let points = curve(&[100.0, 110.0, 99.0, 108.9, 108.9]);
        let costs = Costs {
            fees: 3.0,
            slippage: 1.5,
            traded: 416.9,
            closed: vec![10.0, -4.0, 6.0],
            llm_usd: 0.5,
            decisions: 4,
        };
        let m = metrics(&points, &costs, 0.0);
        // Returns: +10 %, −10 %, +10 %, 0.
        let r = [0.1, -0.1, 0.1, 0.0];
        let mean = 0.025;
        let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0;
        let s = var.sqrt();
        assert_eq!(m.periods, 4);
        assert!((m.total_return - 0.089).abs() < 1e-12);
        assert!((m.annualized_return - (1.089f64.powf(63.0) - 1.0)).abs() < 1e-6);
        assert!((m.volatility - s * 252f64.sqrt()).abs() < 1e-12);
        assert!((m.sharpe - mean / s * 252f64.sqrt()).abs() < 1e-9);
        let downside = (0.01f64 / 4.0).sqrt();
        assert!((m.sortino - mean / downside * 252f64.sqrt()).abs() < 1e-9);
        // The peak 110, the trough 99: 10 %; below the peak for three periods.
        assert!((m.max_drawdown - 0.1).abs() < 1e-12);
        assert_eq!(m.max_drawdown_periods, 3);
        assert!((m.calmar - m.annualized_return / 0.1).abs() < 1e-9);
        assert!((m.win_rate - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.profit_factor - 4.0).abs() < 1e-12);
        assert_eq!((m.average_win, m.average_loss), (8.0, -4.0));
        assert!((m.exposure - 0.5).abs() < 1e-12);
        assert!((m.turnover - 416.9 / 105.36).abs() < 1e-12);
        assert_eq!((m.fees, m.slippage, m.trades), (3.0, 1.5, 3));
        assert!((m.llm_cost_per_decision - 0.125).abs() < 1e-12);
    }

    #[test]
    fn a_flat_curve_has_no_ratios_to_divide_by_zero() {
        let m = metrics(&curve(&[100.0, 100.0, 100.0]), &Costs::default(), 0.02);
        assert_eq!((m.total_return, m.max_drawdown), (0.0, 0.0));
        assert_eq!(
            (m.sharpe, m.calmar, m.profit_factor, m.win_rate),
            (0.0, 0.0, 0.0, 0.0)
        );
        // Below the risk-free rate: a negative Sortino, not a division by zero.
        assert!(m.sortino < 0.0);
    }

    #[test]
    fn buy_and_hold_follows_the_closes() {
        let held = buy_and_hold(&[50.0, 55.0, 45.0], 1000.0);
        assert_eq!(
            held.iter().map(|p| p.equity).collect::<Vec<_>>(),
            [1000.0, 1100.0, 900.0]
        );
        assert!(buy_and_hold(&[], 1000.0).is_empty());
    }
}
