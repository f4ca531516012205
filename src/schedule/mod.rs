//! What runs at a time: `sweep` turns due timers into inbox events every 30 s (and catches up
//! after downtime); `jobs` files the periodic issues (monthly report, decisions log, agenda)
//! once per period. Time itself (the clock, the calendar) is `clock`.

pub mod jobs;
pub mod sweep;
