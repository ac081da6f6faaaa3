//! The local wall-clock time as `HH:MM:SS`, for `uptime -s` and xentop's summary (xl uses
//! `localtime` + `strftime("%H:%M:%S")`). Falls back to UTC when the local offset cannot be determined.

/// Now, local time, `HH:MM:SS`.
pub fn hms_now() -> String {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}
