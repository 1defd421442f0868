//! A scheduled meeting as an RFC 5545 calendar file, for the host to put in
//! a calendar or send to the people invited. The file carries the invite
//! link, passcode and all (in the link's fragment), so only the owner gets
//! it, and it is never cached.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use icalendar::{Calendar, Component, EventLike};

use super::AppState;
use super::error::ApiError;
use super::meetings::{owned, view};
use super::session::Authed;
use crate::store::{MeetingRecord, unix_now};

/// The calendar file of one of the host's scheduled meetings: one VEVENT
/// with the start, the end, the title and the invite link (which holds the
/// passcode: whoever gets the file can join).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/calendar.ics", params(("id" = String, Path)),
    security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, description = "An RFC 5545 calendar with one event; it holds the invite link and so the passcode",
               content_type = "text/calendar", body = String),
              (status = 400, description = "The meeting has no start time", body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn ics(
    State(state): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let m = owned(&state, &user, &id).await?;
    let invite = view(&state, &m).invite_link;
    let host = url_host(&state.config.public_url());
    let body = calendar(&m, &invite, &host, unix_now())
        .ok_or_else(|| ApiError::Invalid("this meeting has no start time".into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"meeting.ics\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// The host part of the server's public URL, for a UID that is unique
/// beyond this server (RFC 5545, 3.8.4.7).
fn url_host(public_url: &str) -> String {
    let rest = public_url.split_once("://").map_or(public_url, |(_, r)| r);
    rest.split(['/', ':'])
        .next()
        .unwrap_or("conclave")
        .to_string()
}

/// The calendar text, or `None` for a meeting that is not scheduled. `now`
/// stamps it (DTSTAMP). The title and the link are escaped and long lines
/// folded by the `icalendar` crate.
pub fn calendar(m: &MeetingRecord, invite: &str, host: &str, now: i64) -> Option<String> {
    let start = chrono::DateTime::from_timestamp(m.starts_at?, 0)?;
    let minutes = i64::from(m.duration_minutes.unwrap_or(60));
    let end = start.checked_add_signed(chrono::TimeDelta::minutes(minutes))?;
    let stamp = chrono::DateTime::from_timestamp(now, 0)?;
    let event = icalendar::Event::new()
        .uid(&format!("{}@{host}", m.id.compact()))
        .timestamp(stamp)
        .starts(start)
        .ends(end)
        .summary(&m.title)
        .url(invite)
        .description(&format!(
            "Join the meeting: {invite}\nThis link holds the meeting's passcode: \
             share it only with the people invited."
        ))
        .done();
    let mut cal = Calendar::new();
    cal.push(event);
    Some(cal.done().to_string())
}
