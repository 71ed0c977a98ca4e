//! The New York Stock Exchange's calendar: which days it trades, and when a session closes.
//! Full-day holidays by the exchange's rules (NYSE Rule 7.2): New Year's Day, Martin Luther
//! King Jr. Day (from 1998), Washington's Birthday, Good Friday, Memorial Day, Juneteenth
//! (from 2022), Independence Day, Labor Day, Thanksgiving and Christmas; a holiday on a
//! Saturday is observed the Friday before (except New Year's Day), on a Sunday the Monday
//! after. One-off closures (2001-09-11 to 09-14, 2004-06-11, 2007-01-02, 2012-10-29/30,
//! 2018-12-05, 2025-01-09) are listed. Early closes are not modelled: a session's close is
//! 16:00 in New York, 21:00 UTC in winter and 20:00 UTC under US daylight saving time
//! (second Sunday of March to first Sunday of November, since 2007).

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};

/// Days the exchange closed outside its rules.
const CLOSURES: &[(i32, u32, u32)] = &[
    (2001, 9, 11),
    (2001, 9, 12),
    (2001, 9, 13),
    (2001, 9, 14),
    (2004, 6, 11),
    (2007, 1, 2),
    (2012, 10, 29),
    (2012, 10, 30),
    (2018, 12, 5),
    (2025, 1, 9),
];

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or_default()
}

/// The `n`th (1-based) `weekday` of a month.
fn nth(year: i32, month: u32, weekday: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n as u8).unwrap_or_default()
}

/// The last `weekday` of a month.
fn last(year: i32, month: u32, weekday: Weekday) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, 5)
        .unwrap_or_else(|| nth(year, month, weekday, 4))
}

/// Easter Sunday (the anonymous Gregorian algorithm, Meeus/Jones/Butcher).
fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    ymd(year, month as u32, day as u32)
}

/// A fixed-date holiday as observed.
fn observed(date: NaiveDate) -> Option<NaiveDate> {
    match date.weekday() {
        Weekday::Sat => date.checked_sub_days(Days::new(1)),
        Weekday::Sun => date.checked_add_days(Days::new(1)),
        _ => Some(date),
    }
}

/// The exchange's full-day holidays of `year`.
pub fn holidays(year: i32) -> Vec<NaiveDate> {
    let mut days = Vec::new();
    // New Year's Day on a Saturday is not moved to the Friday, which closes the year before.
    let new_year = ymd(year, 1, 1);
    match new_year.weekday() {
        Weekday::Sat => {}
        Weekday::Sun => days.push(ymd(year, 1, 2)),
        _ => days.push(new_year),
    }
    if year >= 1998 {
        days.push(nth(year, 1, Weekday::Mon, 3));
    }
    days.push(nth(year, 2, Weekday::Mon, 3));
    days.extend(easter(year).checked_sub_days(Days::new(2)));
    days.push(last(year, 5, Weekday::Mon));
    if year >= 2022 {
        days.extend(observed(ymd(year, 6, 19)));
    }
    days.extend(observed(ymd(year, 7, 4)));
    days.push(nth(year, 9, Weekday::Mon, 1));
    days.push(nth(year, 11, Weekday::Thu, 4));
    days.extend(observed(ymd(year, 12, 25)));
    days.extend(
        CLOSURES
            .iter()
            .filter(|(y, _, _)| *y == year)
            .map(|(y, m, d)| ymd(*y, *m, *d)),
    );
    days.sort();
    days
}

/// Whether the exchange trades on `date`.
pub fn is_trading_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !holidays(date.year()).contains(&date)
}

/// The trading days from `from` to `to`, both inclusive.
pub fn trading_days(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .filter(|d| is_trading_day(*d))
        .collect()
}

/// When the session of `date` closes: 16:00 in New York, in UTC.
pub fn close(date: NaiveDate) -> DateTime<Utc> {
    let year = date.year();
    let dst = nth(year, 3, Weekday::Sun, 2) <= date && date < nth(year, 11, Weekday::Sun, 1);
    let hour = if dst { 20 } else { 21 };
    Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0).unwrap_or_default())
}

/// The newest trading day whose session has closed by `now`.
pub fn last_close(now: DateTime<Utc>) -> NaiveDate {
    let mut day = now.date_naive();
    loop {
        if is_trading_day(day) && close(day) <= now {
            return day;
        }
        match day.pred_opt() {
            Some(previous) => day = previous,
            None => return day,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Market, Replay};

    #[test]
    fn the_2024_holidays_are_the_exchanges() {
        let expected = [
            "2024-01-01",
            "2024-01-15",
            "2024-02-19",
            "2024-03-29",
            "2024-05-27",
            "2024-06-19",
            "2024-07-04",
            "2024-09-02",
            "2024-11-28",
            "2024-12-25",
        ];
        let holidays: Vec<String> = holidays(2024).iter().map(ToString::to_string).collect();
        assert_eq!(holidays, expected);
        // Observed: Juneteenth 2022 on a Sunday, Christmas 2022 on a Sunday, July 4th 2020 on
        // a Saturday; New Year's Day 2022 on a Saturday is not moved.
        for day in ["2022-06-20", "2022-12-26", "2020-07-03"] {
            assert!(!is_trading_day(day.parse().unwrap()), "{day}");
        }
        assert!(is_trading_day("2021-12-31".parse().unwrap()));
    }

    #[test]
    fn every_day_of_the_bundled_data_is_a_trading_day_and_no_trading_day_is_missing() {
        let replay = Replay::bundled().unwrap();
        let days = replay.trading_days();
        let (first, last) = (days[0], days[days.len() - 1]);
        assert_eq!(trading_days(first, last), days);
        assert!(replay.symbols().len() == 3);
    }

    #[test]
    fn a_session_closes_at_four_in_new_york() {
        assert_eq!(
            close(ymd(2024, 1, 2)).to_rfc3339(),
            "2024-01-02T21:00:00+00:00"
        );
        assert_eq!(
            close(ymd(2024, 7, 2)).to_rfc3339(),
            "2024-07-02T20:00:00+00:00"
        );
        // A Saturday morning: Friday's session.
        let saturday = Utc.with_ymd_and_hms(2024, 1, 6, 10, 0, 0).unwrap();
        assert_eq!(last_close(saturday), ymd(2024, 1, 5));
        // Before the close: the day before.
        let noon = Utc.with_ymd_and_hms(2024, 1, 3, 17, 0, 0).unwrap();
        assert_eq!(last_close(noon), ymd(2024, 1, 2));
    }
}
