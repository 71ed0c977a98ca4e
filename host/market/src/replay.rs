//! The replayed market: daily bars read from CSV (`date,open,high,low,close,volume,adj_close`),
//! adjusted for splits and dividends by the factor `adj_close / close`, which scales open,
//! high, low and close alike (and divides volume), so returns across a split are continuous.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::{Bar, Error, Market, Result, Timeframe};

/// The bundled data: (symbol, CSV text).
const BUNDLED: &[(&str, &str)] = &[
    ("AAPL", include_str!("../data/AAPL.csv")),
    ("IBM", include_str!("../data/IBM.csv")),
    ("MSFT", include_str!("../data/MSFT.csv")),
];

/// The first day a bar may have: market times are milliseconds since the Unix epoch.
const FIRST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 2) {
    Some(day) => day,
    None => NaiveDate::MIN,
};

/// A row of the CSV files, as written.
#[derive(Debug, Deserialize)]
struct Row {
    date: NaiveDate,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    adj_close: f64,
}

/// Daily bars held in memory, per symbol, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    bars: BTreeMap<String, Vec<Bar>>,
}

impl Replay {
    /// The bundled AAPL, MSFT and IBM daily bars, 2000-03-01 to 2013-03-01.
    ///
    /// # Errors
    /// [`Error::Data`] if the bundled files do not parse (a build of a broken tree).
    pub fn bundled() -> Result<Replay> {
        let mut replay = Replay::default();
        for (symbol, text) in BUNDLED {
            replay.add_csv(symbol, text)?;
        }
        Ok(replay)
    }

    /// Add `symbol`'s bars from CSV text with the columns above (parsed with the `csv`
    /// crate). Rows may come in any order; they are kept sorted by date.
    ///
    /// # Errors
    /// [`Error::Data`] naming the row that does not parse, or a row whose prices are not
    /// positive numbers, whose open or close lies outside its low and high, whose volume is
    /// negative, whose date is before 1970, or whose date repeats.
    pub fn add_csv(&mut self, symbol: &str, text: &str) -> Result<()> {
        let mut bars = Vec::new();
        for (line, row) in csv::Reader::from_reader(text.as_bytes())
            .deserialize::<Row>()
            .enumerate()
        {
            let row = row.map_err(|e| Error::Data(format!("{symbol}: {e}")))?;
            let bad = |why: &str| Error::Data(format!("{symbol}, row {}: {why}", line + 2));
            let prices = [row.open, row.high, row.low, row.close, row.adj_close];
            if !prices.iter().all(|p| p.is_finite() && *p > 0.0) {
                return Err(bad("prices must be positive numbers"));
            }
            if !(row.volume.is_finite() && row.volume >= 0.0) {
                return Err(bad("volume must be a number of shares"));
            }
            if row.low > row.high {
                return Err(bad("low above high"));
            }
            if row.low > row.open.min(row.close) || row.high < row.open.max(row.close) {
                return Err(bad("open and close must lie between low and high"));
            }
            if row.date < FIRST_DAY {
                return Err(bad("dates start in 1970"));
            }
            let factor = row.adj_close / row.close;
            bars.push(Bar {
                date: row.date,
                open: row.open * factor,
                high: row.high * factor,
                low: row.low * factor,
                close: row.close * factor,
                volume: row.volume / factor,
            });
        }
        self.set_series(symbol, bars)
    }

    /// Replace `symbol`'s bars with `bars` (in any order; kept sorted by date).
    ///
    /// # Errors
    /// [`Error::Data`] when a date repeats.
    pub fn set_series(&mut self, symbol: &str, mut bars: Vec<Bar>) -> Result<()> {
        bars.sort_by_key(|bar| bar.date);
        if let Some(pair) = bars.windows(2).find(|pair| pair[0].date == pair[1].date) {
            return Err(Error::Data(format!(
                "{symbol}: {} appears twice",
                pair[0].date
            )));
        }
        self.bars.insert(symbol.to_string(), bars);
        Ok(())
    }

    /// Every date on which some symbol has a bar, oldest first: the trading calendar of the
    /// replay.
    pub fn trading_days(&self) -> Vec<NaiveDate> {
        let mut days: Vec<NaiveDate> = self
            .bars
            .values()
            .flat_map(|bars| bars.iter().map(|bar| bar.date))
            .collect();
        days.sort();
        days.dedup();
        days
    }

    fn series(&self, symbol: &str) -> Result<&[Bar]> {
        self.bars
            .get(symbol)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::UnknownSymbol(symbol.to_string()))
    }
}

impl Market for Replay {
    fn symbols(&self) -> Vec<String> {
        self.bars.keys().cloned().collect()
    }

    fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from: NaiveDate,
        to: NaiveDate,
        as_of: NaiveDate,
    ) -> Result<Vec<Bar>> {
        let Timeframe::Day = timeframe;
        if to > as_of {
            return Err(Error::LookAhead { to, as_of });
        }
        if from > to {
            return Err(Error::InvalidRange { from, to });
        }
        let series = self.series(symbol)?;
        let start = series.partition_point(|bar| bar.date < from);
        let end = series.partition_point(|bar| bar.date <= to);
        Ok(series[start..end].to_vec())
    }

    fn latest(&self, symbol: &str, as_of: NaiveDate) -> Result<Option<Bar>> {
        let series = self.series(symbol)?;
        let known = series.partition_point(|bar| bar.date <= as_of);
        Ok(known.checked_sub(1).map(|i| series[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn the_bundled_data_is_whole_and_consistent() {
        let replay = Replay::bundled().unwrap();
        assert_eq!(replay.symbols(), ["AAPL", "IBM", "MSFT"]);
        for symbol in replay.symbols() {
            let bars = replay.series(&symbol).unwrap();
            assert_eq!(bars.len(), 3270, "{symbol}");
            assert_eq!(bars[0].date, date("2000-03-01"));
            assert_eq!(bars[bars.len() - 1].date, date("2013-03-01"));
            // One factor scales the whole bar: it stays a bar.
            for bar in bars {
                assert!(
                    bar.low <= bar.open && bar.open <= bar.high,
                    "{symbol} {bar:?}"
                );
                assert!(
                    bar.low <= bar.close && bar.close <= bar.high,
                    "{symbol} {bar:?}"
                );
            }
        }
        assert_eq!(replay.trading_days().len(), 3270);
    }

    #[test]
    fn adjusted_prices_run_on_across_aapls_2005_split() {
        let replay = Replay::bundled().unwrap();
        let bars = replay
            .bars(
                "AAPL",
                Timeframe::Day,
                date("2005-02-25"),
                date("2005-02-28"),
                date("2005-02-28"),
            )
            .unwrap();
        assert_eq!(bars.len(), 2);
        // The raw close halved (88.99 to 44.86); the adjusted one moved by under 1%.
        let change = bars[1].close / bars[0].close - 1.0;
        assert!(change.abs() < 0.01, "{change}");
        assert!(bars[1].open < bars[1].high);
    }

    #[test]
    fn nothing_after_as_of_is_returned_and_asking_for_it_is_look_ahead() {
        let replay = Replay::bundled().unwrap();
        let as_of = date("2008-09-15");
        let error = replay
            .bars(
                "MSFT",
                Timeframe::Day,
                date("2008-09-01"),
                date("2008-09-16"),
                as_of,
            )
            .unwrap_err();
        assert_eq!(error.code(), "look_ahead");
        assert!(error.to_string().contains("2008-09-16"), "{error}");
        let bars = replay
            .bars("MSFT", Timeframe::Day, date("2008-09-01"), as_of, as_of)
            .unwrap();
        assert_eq!(bars.last().unwrap().date, as_of);
        assert!(bars.iter().all(|bar| bar.date <= as_of));
        // Labor Day, 2008-09-01, has no bar.
        assert_eq!(bars.first().unwrap().date, date("2008-09-02"));
    }

    proptest::proptest! {
        /// Whatever the as-of day and the range, no answer holds a bar after as-of: a range
        /// that reaches past it is refused, and the latest bar is never later.
        #[test]
        fn no_answer_holds_a_bar_after_as_of(
            as_of in 0i64..5000, from in -30i64..5000, length in 0i64..400, symbol in 0usize..3
        ) {
            let replay = bundled();
            let start = date("1999-12-01");
            let day = |n: i64| start + chrono::Duration::days(n);
            let (as_of, from) = (day(as_of), day(from));
            let to = from + chrono::Duration::days(length);
            let symbol = ["AAPL", "IBM", "MSFT"][symbol];
            match replay.bars(symbol, Timeframe::Day, from, to, as_of) {
                Ok(bars) => {
                    proptest::prop_assert!(to <= as_of);
                    proptest::prop_assert!(bars.iter().all(|b| b.date <= as_of && b.date >= from));
                }
                Err(error) => proptest::prop_assert_eq!(error.code(), "look_ahead"),
            }
            if let Some(bar) = replay.latest(symbol, as_of).unwrap() {
                proptest::prop_assert!(bar.date <= as_of);
            }
        }
    }

    fn bundled() -> &'static Replay {
        static BUNDLED: std::sync::OnceLock<Replay> = std::sync::OnceLock::new();
        BUNDLED.get_or_init(|| Replay::bundled().unwrap())
    }

    #[test]
    fn the_latest_bar_is_the_last_one_known_at_as_of() {
        let replay = Replay::bundled().unwrap();
        // A Saturday: Friday's bar.
        let latest = replay.latest("IBM", date("2010-01-09")).unwrap().unwrap();
        assert_eq!(latest.date, date("2010-01-08"));
        assert_eq!(replay.latest("IBM", date("1999-12-31")).unwrap(), None);
        assert_eq!(
            replay
                .latest("NOPE", date("2010-01-08"))
                .unwrap_err()
                .code(),
            "unknown_symbol"
        );
    }

    #[test]
    fn bad_rows_are_refused_by_row() {
        let mut replay = Replay::default();
        let header = "date,open,high,low,close,volume,adj_close\n";
        let inverted = format!("{header}2001-01-02,10,9,11,10,100,10\n");
        let error = replay.add_csv("X", &inverted).unwrap_err();
        assert!(error.to_string().contains("row 2"), "{error}");
        let twice = format!("{header}2001-01-02,10,11,9,10,100,10\n2001-01-02,10,11,9,10,100,10\n");
        assert!(
            replay
                .add_csv("X", &twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        for (row, why) in [
            ("2001-01-02,NaN,11,9,10,100,10", "positive numbers"),
            ("2001-01-02,inf,11,9,10,100,10", "positive numbers"),
            ("2001-01-02,0,11,9,10,100,10", "positive numbers"),
            ("2001-01-02,12,11,9,10,100,10", "between low and high"),
            ("2001-01-02,10,11,9,10,-5,10", "volume"),
            ("1969-12-31,10,11,9,10,100,10", "1970"),
        ] {
            let error = replay
                .add_csv("X", &format!("{header}{row}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(why) && error.contains("row 2"),
                "{row}: {error}"
            );
        }
        let garbage = format!("{header}yesterday,10,11,9,10,100,10\n");
        assert_eq!(
            replay.add_csv("X", &garbage).unwrap_err().code(),
            "market_data"
        );
    }
}
