//! The market clock of a replay: which trading day has just closed. It moves only forward, one
//! trading day per step, over a calendar of trading days (the days the data has bars for).

use chrono::NaiveDate;

/// The trading day whose close the market has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketClock {
    days: Vec<NaiveDate>,
    at: usize,
}

impl MarketClock {
    /// A clock over `days` (sorted, distinct) standing at the first trading day on or after
    /// `start`; `None` when no trading day is that late.
    pub fn new(mut days: Vec<NaiveDate>, start: NaiveDate) -> Option<MarketClock> {
        days.sort();
        days.dedup();
        let at = days.partition_point(|day| *day < start);
        (at < days.len()).then_some(MarketClock { days, at })
    }

    /// The as-of date: the trading day that has closed.
    pub fn as_of(&self) -> NaiveDate {
        self.days[self.at]
    }

    /// Move to the next trading day and answer it, or `None` at the end of the calendar (the
    /// clock then stays on the last day).
    pub fn advance(&mut self) -> Option<NaiveDate> {
        if self.at + 1 < self.days.len() {
            self.at += 1;
            Some(self.as_of())
        } else {
            None
        }
    }

    /// Add trading day `day` to the calendar when it is later than every day in it (a live
    /// market's newest close); the clock stays where it is.
    pub fn push(&mut self, day: NaiveDate) {
        if self.days.last().is_none_or(|last| *last < day) {
            self.days.push(day);
        }
    }

    /// Trading days left after the current one.
    pub fn remaining(&self) -> usize {
        self.days.len() - self.at - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Replay;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn the_clock_walks_trading_days_only() {
        let days = Replay::bundled().unwrap().trading_days();
        // A Saturday start waits for Monday.
        let mut clock = MarketClock::new(days.clone(), date("2005-02-26")).unwrap();
        assert_eq!(clock.as_of(), date("2005-02-28"));
        // Friday 2005-03-04 is followed by Monday 2005-03-07.
        let mut clock2 = MarketClock::new(days.clone(), date("2005-03-04")).unwrap();
        assert_eq!(clock2.advance(), Some(date("2005-03-07")));
        assert_eq!(clock.advance(), Some(date("2005-03-01")));

        let mut end = MarketClock::new(days.clone(), date("2013-02-28")).unwrap();
        assert_eq!(end.remaining(), 1);
        assert_eq!(end.advance(), Some(date("2013-03-01")));
        assert_eq!(end.advance(), None);
        assert_eq!(end.as_of(), date("2013-03-01"));
        assert_eq!(MarketClock::new(days, date("2013-03-02")), None);
    }
}
