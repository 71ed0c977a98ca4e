//! Indicators and statistics for agents (the `calculator` feature): a thin layer over ta-rs
//! for the indicators and statrs for the moments, so that every agent computes them the same
//! way. Each indicator takes the series oldest first and answers its value at the last
//! element, or `None` while the series is shorter than the indicator needs.
//!
//! ```
//! use overseer_guest::calculator::{self, Candle};
//!
//! // Closes of a rising market: the short average is above the long one, RSI is high.
//! let closes: Vec<f64> = (0..60).map(|n| 100.0 + n as f64).collect();
//! assert!(calculator::sma(&closes, 20).unwrap() > calculator::sma(&closes, 50).unwrap());
//! assert!(calculator::rsi(&closes, 14).unwrap() > 70.0);
//! let macd = calculator::macd(&closes, 12, 26, 9).unwrap();
//! assert!(macd.macd > 0.0);
//! // ATR needs highs and lows as well.
//! let candles: Vec<Candle> = closes
//!     .iter()
//!     .map(|c| Candle { open: *c, high: c + 1.0, low: c - 1.0, close: *c, volume: 1e6 })
//!     .collect();
//! assert!(calculator::atr(&candles, 14).unwrap() > 0.0);
//! // Daily returns and their annualised Sharpe ratio (risk-free rate 0).
//! let returns = calculator::returns(&closes);
//! assert!(calculator::sharpe(&returns, 0.0) > 0.0);
//! ```

use statrs::statistics::Statistics;
use ta::indicators::{
    AverageTrueRange, BollingerBands, ExponentialMovingAverage, MovingAverageConvergenceDivergence,
    RelativeStrengthIndex, SimpleMovingAverage,
};
use ta::{DataItem, Next};

/// Trading days in a year: the annualisation of daily figures.
pub const PERIODS_PER_YEAR: f64 = 252.0;

/// One bar's prices and volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// MACD at the last element: the line, its signal and their difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Macd {
    pub macd: f64,
    pub signal: f64,
    pub histogram: f64,
}

/// Bollinger bands at the last element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    pub lower: f64,
    pub middle: f64,
    pub upper: f64,
}

/// Run `indicator` over `values` when there are at least `needed`, answering its last output.
fn last<I: Next<f64>>(mut indicator: I, values: &[f64], needed: usize) -> Option<I::Output> {
    if values.len() < needed || needed == 0 {
        return None;
    }
    values.iter().map(|v| indicator.next(*v)).last()
}

/// Simple moving average of the last `period` values.
pub fn sma(values: &[f64], period: usize) -> Option<f64> {
    last(SimpleMovingAverage::new(period).ok()?, values, period)
}

/// Exponential moving average (smoothing 2 / (period + 1)) over the whole series.
pub fn ema(values: &[f64], period: usize) -> Option<f64> {
    last(ExponentialMovingAverage::new(period).ok()?, values, period)
}

/// Relative strength index, 0 to 100.
pub fn rsi(values: &[f64], period: usize) -> Option<f64> {
    last(RelativeStrengthIndex::new(period).ok()?, values, period + 1)
}

/// MACD: EMA(fast) − EMA(slow), its EMA(signal), and their difference.
pub fn macd(values: &[f64], fast: usize, slow: usize, signal: usize) -> Option<Macd> {
    let out = last(
        MovingAverageConvergenceDivergence::new(fast, slow, signal).ok()?,
        values,
        slow,
    )?;
    Some(Macd {
        macd: out.macd,
        signal: out.signal,
        histogram: out.histogram,
    })
}

/// Bollinger bands: the `period` average, `k` standard deviations either side.
pub fn bollinger(values: &[f64], period: usize, k: f64) -> Option<Bands> {
    let out = last(BollingerBands::new(period, k).ok()?, values, period)?;
    Some(Bands {
        lower: out.lower,
        middle: out.average,
        upper: out.upper,
    })
}

/// Average true range over `period` bars.
pub fn atr(candles: &[Candle], period: usize) -> Option<f64> {
    if candles.len() < period || period == 0 {
        return None;
    }
    let mut indicator = AverageTrueRange::new(period).ok()?;
    let mut out = None;
    for c in candles {
        let item = DataItem::builder()
            .open(c.open)
            .high(c.high)
            .low(c.low)
            .close(c.close)
            .volume(c.volume)
            .build()
            .ok()?;
        out = Some(indicator.next(&item));
    }
    out
}

/// Period returns `v_t / v_{t−1} − 1`.
pub fn returns(values: &[f64]) -> Vec<f64> {
    values.windows(2).map(|w| w[1] / w[0] - 1.0).collect()
}

/// The mean, or NaN of an empty series.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().mean()
}

/// The sample standard deviation (n − 1), or NaN with fewer than two values.
pub fn std_dev(values: &[f64]) -> f64 {
    values.iter().std_dev()
}

/// The annualised Sharpe ratio of daily `returns` against the annual risk-free rate:
/// `(mean(r) − f) / sd(r) · √252` with `f = (1 + rf)^(1/252) − 1`; 0 without variance.
pub fn sharpe(returns: &[f64], risk_free: f64) -> f64 {
    let free = (1.0 + risk_free).powf(1.0 / PERIODS_PER_YEAR) - 1.0;
    let deviation = std_dev(returns);
    if !deviation.is_finite() || deviation == 0.0 {
        return 0.0;
    }
    (mean(returns) - free) / deviation * PERIODS_PER_YEAR.sqrt()
}

/// The largest fall from a running peak, as a fraction: `max(1 − v_t / max(v_0 … v_t))`.
pub fn max_drawdown(values: &[f64]) -> f64 {
    let mut peak = f64::MIN;
    let mut worst: f64 = 0.0;
    for v in values {
        peak = peak.max(*v);
        if peak > 0.0 {
            worst = worst.max(1.0 - v / peak);
        }
    }
    worst
}

/// The last value over the mean of the `period` values before it (a day's volume against
/// its 20-day mean); `None` with fewer than `period + 1` values or a mean that is not
/// positive.
pub fn volume_ratio(values: &[f64], period: usize) -> Option<f64> {
    let n = values.len();
    if period == 0 || n <= period {
        return None;
    }
    let before = mean(&values[n - 1 - period..n - 1]);
    (before > 0.0).then(|| values[n - 1] / before)
}

/// How far the last value is below the highest of the last `period` (itself included), as a
/// fraction: `1 − v_t / max(v_{t−period+1} … v_t)`; `None` for an empty series or a high
/// that is not positive.
pub fn drawdown_from_high(values: &[f64], period: usize) -> Option<f64> {
    let last = *values.last()?;
    let high = values[values.len().saturating_sub(period.max(1))..]
        .iter()
        .copied()
        .fold(f64::MIN, f64::max);
    (high > 0.0).then(|| 1.0 - last / high)
}

/// One-period historical value at risk and conditional value at risk (expected shortfall) of
/// `returns` at `level` (0.95 for 95 %), as positive losses: with the returns sorted
/// ascending and `k = ⌊(1 − level) · n⌋`, `VaR = −r_(k)` and `CVaR = −mean(r_(0) … r_(k))`
/// (the historical-simulation estimator of Jorion, *Value at Risk*, ch. 5). `None` for an
/// empty series.
pub fn var_cvar(returns: &[f64], level: f64) -> Option<(f64, f64)> {
    if returns.is_empty() {
        return None;
    }
    let mut sorted = returns.to_vec();
    sorted.sort_by(f64::total_cmp);
    let k = (((1.0 - level) * sorted.len() as f64).floor() as usize).min(sorted.len() - 1);
    let tail = &sorted[..=k];
    Some((-sorted[k], -mean(tail)))
}

/// The Pearson correlation of two equally long series: their sample covariance over the
/// product of their sample deviations (statrs). `None` when the lengths differ, with fewer
/// than two pairs, or when either series is constant.
pub fn correlation(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return None;
    }
    let (sx, sy) = (std_dev(xs), std_dev(ys));
    if !(sx > 0.0 && sy > 0.0) {
        return None;
    }
    Some(xs.iter().covariance(ys.iter()) / (sx * sy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators_match_hand_computed_values() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(sma(&values, 5), Some(3.0));
        assert_eq!(sma(&values, 6), None);
        // EMA(3): k = 0.5, seeded with the first value: 1, 1.5, 2.25, 3.125, 4.0625.
        assert!((ema(&values, 3).unwrap() - 4.0625).abs() < 1e-12);
        let bands = bollinger(&values, 5, 2.0).unwrap();
        assert!((bands.middle - 3.0).abs() < 1e-12);
        // ta-rs uses the population deviation: sqrt(2).
        assert!((bands.upper - (3.0 + 2.0 * 2f64.sqrt())).abs() < 1e-12);
        assert!(rsi(&[1.0, 2.0, 3.0], 3).is_none());
    }

    #[test]
    fn statistics_match_hand_computed_values() {
        assert_eq!(
            returns(&[100.0, 110.0, 99.0]),
            [0.10000000000000009, -0.09999999999999998]
        );
        assert!((mean(&[1.0, 2.0, 3.0]) - 2.0).abs() < 1e-12);
        assert!((std_dev(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert!((max_drawdown(&[100.0, 120.0, 90.0, 130.0]) - 0.25).abs() < 1e-12);
        assert_eq!(sharpe(&[0.01, 0.01], 0.0), 0.0);
        let r = [0.01, -0.005, 0.02];
        let expected = (0.025 / 3.0) / std_dev(&r) * 252f64.sqrt();
        assert!((sharpe(&r, 0.0) - expected).abs() < 1e-12);
        // Twenty returns: k = 1, VaR the second worst, CVaR the mean of the two worst.
        let mut twenty: Vec<f64> = (0..20).map(|i| f64::from(i) / 100.0).collect();
        twenty[0] = -0.05;
        twenty[1] = -0.03;
        let (var, cvar) = var_cvar(&twenty, 0.95).unwrap();
        assert!((var - 0.03).abs() < 1e-12 && (cvar - 0.04).abs() < 1e-12);
        assert_eq!(var_cvar(&[], 0.95), None);
        let rho = correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]).unwrap();
        assert!(rho > 0.98 && rho < 1.0, "{rho}");
        assert_eq!(correlation(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(volume_ratio(&[1.0, 3.0, 6.0], 2), Some(3.0));
        assert_eq!(volume_ratio(&[1.0, 6.0], 2), None);
        assert_eq!(drawdown_from_high(&[100.0, 200.0, 150.0], 3), Some(0.25));
        assert_eq!(drawdown_from_high(&[200.0, 100.0, 150.0], 2), Some(0.0));
        assert_eq!(drawdown_from_high(&[], 5), None);
    }
}
