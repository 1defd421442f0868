//! A host's meetings. Only the owner sees or changes a meeting: anyone else
//! gets the same 404 as for a meeting that does not exist.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use conclave_core::Input;
use conclave_proto::ids::{
    PASSCODE_MAX_LEN, PASSCODE_MIN_LEN, generate_passcode, normalize_passcode,
};
use conclave_proto::{
    EndReason, MAX_PARTICIPANTS_LIMIT, MeetingId, Permissions, Publishing, ScreenShare,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiJson};
use super::session::Authed;
use crate::join_policy::{MAX_INVITED, WhoMayJoin, clean_invited_email};
use crate::rooms::RoomCmd;
use crate::store::{MeetingRecord, User, unix_now};

const MAX_TITLE_CHARS: usize = 200;

#[derive(Serialize, ToSchema, Clone)]
pub struct MeetingSettings {
    pub passcode_required: bool,
    pub waiting_room: bool,
    /// `host_only` or `everyone`.
    #[schema(value_type = String, example = "host_only")]
    pub screen_share: ScreenShare,
    pub chat: bool,
    pub self_unmute: bool,
    pub rename_self: bool,
    /// Who may publish media: `everyone`, or `allowed`: only hosts,
    /// co-hosts and the participants a moderator allows (view-only
    /// attendees, for lectures and all-hands meetings).
    #[schema(value_type = String, example = "everyone")]
    pub publish: Publishing,
    /// True unless `who_may_join` is `anyone` (kept for older clients).
    pub only_signed_in: bool,
    /// `anyone` (guests wait in the waiting room), `signed_in`, or
    /// `organisation`: the organisation's people and `invited_emails` only.
    /// Passcode and waiting room apply on top.
    pub who_may_join: WhoMayJoin,
    /// Outside email addresses admitted by an `organisation` meeting when
    /// signed in through a configured provider with that (verified) address.
    pub invited_emails: Vec<String>,
    pub max_participants: u32,
    /// False: a guest who comes while no host or co-host is in the meeting
    /// waits, told why, until one arrives.
    pub join_before_host: bool,
}

/// A partial change of settings: absent fields stay as they are.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub passcode_required: Option<bool>,
    pub waiting_room: Option<bool>,
    #[schema(value_type = Option<String>, example = "everyone")]
    pub screen_share: Option<ScreenShare>,
    pub chat: Option<bool>,
    pub self_unmute: Option<bool>,
    pub rename_self: Option<bool>,
    #[schema(value_type = Option<String>, example = "allowed")]
    pub publish: Option<Publishing>,
    /// True: `signed_in` (unless already `organisation`); false: `anyone`.
    /// `who_may_join`, when also given, wins.
    pub only_signed_in: Option<bool>,
    pub who_may_join: Option<WhoMayJoin>,
    /// Replaces the invited addresses (at most 100).
    #[schema(max_items = 100)]
    pub invited_emails: Option<Vec<String>>,
    /// 2 to 1000 (`MAX_PARTICIPANTS_LIMIT`).
    #[schema(minimum = 2, maximum = 1000)]
    pub max_participants: Option<u32>,
    pub join_before_host: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct MeetingView {
    /// Grouped form, e.g. `abcd-efgh-jkmn-pqrs`.
    pub id: String,
    pub title: String,
    /// Null when the meeting needs no passcode.
    pub passcode: Option<String>,
    /// `<public url>/j/<id>#p=<passcode>`: the passcode rides in the fragment,
    /// which browsers never send to a server.
    pub invite_link: String,
    pub settings: MeetingSettings,
    pub created_at: i64,
    /// Whether the meeting is in progress now.
    pub running: bool,
    /// Planned start, Unix seconds (UTC); null when not scheduled.
    pub starts_at: Option<i64>,
    /// Planned length; null when not scheduled.
    pub duration_minutes: Option<u32>,
}

/// Latest start a meeting may be scheduled for: the end of year 9999 (UTC),
/// past which calendars have no dates.
pub const MAX_STARTS_AT: i64 = 253_402_300_799;
/// Longest scheduled meeting, in minutes: a day.
pub const MAX_DURATION_MINUTES: u32 = 24 * 60;
/// The length a start without one gets.
const DEFAULT_DURATION_MINUTES: u32 = 60;

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateMeeting {
    pub title: Option<String>,
    /// A passcode of the host's choosing (8 to 64 characters); generated if absent.
    pub passcode: Option<String>,
    #[serde(default)]
    pub settings: SettingsPatch,
    /// Planned start, Unix seconds (UTC).
    #[schema(minimum = 0, maximum = 253_402_300_799_i64)]
    pub starts_at: Option<i64>,
    /// Planned length, 1 to 1440 minutes; 60 if a start is given without one.
    #[schema(minimum = 1, maximum = 1440)]
    pub duration_minutes: Option<u32>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeeting {
    pub title: Option<String>,
    /// Set a passcode of the host's choosing.
    pub passcode: Option<String>,
    /// Replace the passcode with a fresh generated one.
    #[serde(default)]
    pub regenerate_passcode: bool,
    #[serde(default)]
    pub settings: SettingsPatch,
    /// A new planned start, Unix seconds (UTC).
    #[schema(minimum = 0, maximum = 253_402_300_799_i64)]
    pub starts_at: Option<i64>,
    /// A new planned length, 1 to 1440 minutes (the meeting must be scheduled).
    #[schema(minimum = 1, maximum = 1440)]
    pub duration_minutes: Option<u32>,
    /// Forget the start and length (not with `starts_at` or `duration_minutes`).
    #[serde(default)]
    pub unschedule: bool,
}

/// Sets the schedule from a start and a length, either or both given,
/// checking them first: a length needs a start, given now or before.
fn apply_schedule(
    m: &mut MeetingRecord,
    starts_at: Option<i64>,
    duration: Option<u32>,
) -> Result<(), ApiError> {
    if let Some(t) = starts_at
        && !(0..=MAX_STARTS_AT).contains(&t)
    {
        return Err(ApiError::Invalid(format!(
            "starts_at is Unix seconds from 0 to {MAX_STARTS_AT}"
        )));
    }
    if let Some(d) = duration
        && !(1..=MAX_DURATION_MINUTES).contains(&d)
    {
        return Err(ApiError::Invalid(format!(
            "duration_minutes is 1 to {MAX_DURATION_MINUTES}"
        )));
    }
    let start = starts_at.or(m.starts_at);
    if start.is_none() && duration.is_some() {
        return Err(ApiError::Invalid("duration_minutes needs starts_at".into()));
    }
    if start.is_some() {
        m.starts_at = start;
        m.duration_minutes = duration
            .or(m.duration_minutes)
            .or(Some(DEFAULT_DURATION_MINUTES));
    }
    Ok(())
}

pub(super) fn view(state: &AppState, m: &MeetingRecord) -> MeetingView {
    let id = m.id.to_string();
    let mut invite_link = format!("{}/j/{id}", state.config.public_url());
    if let Some(p) = &m.passcode {
        invite_link.push_str("#p=");
        invite_link.push_str(p);
    }
    MeetingView {
        title: m.title.clone(),
        passcode: m.passcode.clone(),
        invite_link,
        settings: MeetingSettings {
            passcode_required: m.passcode.is_some(),
            waiting_room: m.waiting_room,
            screen_share: m.permissions.screen_share,
            chat: m.permissions.chat,
            self_unmute: m.permissions.self_unmute,
            rename_self: m.permissions.rename_self,
            publish: m.permissions.publish,
            only_signed_in: m.only_signed_in,
            who_may_join: m.who_may_join(),
            invited_emails: m.invited_emails.clone(),
            max_participants: m.max_participants,
            join_before_host: m.join_before_host,
        },
        created_at: m.created_at,
        running: state.rooms.is_running(m.id),
        starts_at: m.starts_at,
        duration_minutes: m.duration_minutes,
        id,
    }
}

fn clean_title(t: &str) -> Result<String, ApiError> {
    let t = t.trim();
    if t.is_empty() || t.chars().count() > MAX_TITLE_CHARS || t.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "a title has 1 to {MAX_TITLE_CHARS} characters and no control characters"
        )));
    }
    Ok(t.to_string())
}

fn clean_passcode(p: &str) -> Result<String, ApiError> {
    let p = normalize_passcode(p);
    let n = p.chars().count();
    if !(PASSCODE_MIN_LEN..=PASSCODE_MAX_LEN).contains(&n) || p.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "a passcode has {PASSCODE_MIN_LEN} to {PASSCODE_MAX_LEN} characters"
        )));
    }
    Ok(p)
}

/// Applies a settings patch, validating before changing anything.
fn apply_settings(m: &mut MeetingRecord, s: &SettingsPatch) -> Result<(), ApiError> {
    if let Some(n) = s.max_participants {
        if !(2..=MAX_PARTICIPANTS_LIMIT).contains(&n) {
            return Err(ApiError::Invalid(format!(
                "max_participants is 2 to {MAX_PARTICIPANTS_LIMIT}"
            )));
        }
        m.max_participants = n;
    }
    if let Some(v) = s.waiting_room {
        m.waiting_room = v;
    }
    if let Some(v) = s.screen_share {
        m.permissions.screen_share = v;
    }
    if let Some(v) = s.chat {
        m.permissions.chat = v;
    }
    if let Some(v) = s.self_unmute {
        m.permissions.self_unmute = v;
    }
    if let Some(v) = s.rename_self {
        m.permissions.rename_self = v;
    }
    if let Some(v) = s.publish {
        m.permissions.publish = v;
    }
    if let Some(list) = &s.invited_emails {
        if list.len() > MAX_INVITED {
            return Err(ApiError::Invalid(format!(
                "invite at most {MAX_INVITED} addresses"
            )));
        }
        let mut clean = Vec::with_capacity(list.len());
        for e in list {
            let Some(e) = clean_invited_email(e) else {
                return Err(ApiError::Invalid(
                    "invited_emails holds something that is not an email address".into(),
                ));
            };
            if !clean.contains(&e) {
                clean.push(e);
            }
        }
        m.invited_emails = clean;
    }
    if let Some(v) = s.only_signed_in {
        match (v, m.who_may_join()) {
            (false, _) => m.set_who_may_join(WhoMayJoin::Anyone),
            (true, WhoMayJoin::Anyone) => m.set_who_may_join(WhoMayJoin::SignedIn),
            (true, _) => {}
        }
    }
    if let Some(w) = s.who_may_join {
        m.set_who_may_join(w);
    }
    if let Some(v) = s.join_before_host {
        m.join_before_host = v;
    }
    Ok(())
}

async fn set_passcode(
    state: &AppState,
    m: &mut MeetingRecord,
    p: Option<String>,
) -> Result<(), ApiError> {
    match p {
        Some(p) => {
            m.passcode_hash = Some(state.hasher.hash(p.clone()).await?);
            m.passcode = Some(p);
        }
        None => {
            m.passcode = None;
            m.passcode_hash = None;
        }
    }
    Ok(())
}

pub(super) async fn owned(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<MeetingRecord, ApiError> {
    let id: MeetingId = id.parse().map_err(|_| ApiError::NotFound)?;
    match state.store.meeting(id).await? {
        Some(m) if m.owner_id == user.id => Ok(m),
        _ => Err(ApiError::NotFound),
    }
}

/// Create a meeting with safe defaults: generated passcode, waiting room on,
/// host-only screen share.
#[utoipa::path(post, path = "/api/v1/meetings", request_body = CreateMeeting, security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 201, body = MeetingView), (status = 400, body = super::error::ErrorBody),
              (status = 403, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Authed(user): Authed,
    ApiJson(req): ApiJson<CreateMeeting>,
) -> Result<(StatusCode, ApiJson<MeetingView>), ApiError> {
    if !user.may_host {
        return Err(ApiError::Forbidden(
            "your organisation's provider does not let this account host meetings",
        ));
    }
    let title = match &req.title {
        Some(t) => clean_title(t)?,
        None => format!("{}'s meeting", user.username),
    };
    let mut m = MeetingRecord {
        id: MeetingId::generate(),
        owner_id: user.id,
        title,
        passcode: None,
        passcode_hash: None,
        waiting_room: true,
        permissions: Permissions::default(),
        only_signed_in: false,
        organisation_only: false,
        invited_emails: Vec::new(),
        max_participants: 100,
        created_at: unix_now(),
        starts_at: None,
        duration_minutes: None,
        join_before_host: true,
    };
    m.set_who_may_join(state.config.organisation.default_who_may_join);
    apply_settings(&mut m, &req.settings)?;
    apply_schedule(&mut m, req.starts_at, req.duration_minutes)?;
    let passcode = match (req.settings.passcode_required, req.passcode) {
        (Some(false), Some(_)) => {
            return Err(ApiError::Invalid(
                "a passcode was given but passcode_required is false".into(),
            ));
        }
        (Some(false), None) => None,
        (_, Some(p)) => Some(clean_passcode(&p)?),
        (_, None) => Some(generate_passcode()),
    };
    set_passcode(&state, &mut m, passcode).await?;
    state.store.insert_meeting(&m).await?;
    tracing::info!(meeting = %m.id, owner = %user.username, "meeting created");
    Ok((StatusCode::CREATED, ApiJson(view(&state, &m))))
}

/// The signed-in host's meetings.
#[utoipa::path(get, path = "/api/v1/meetings", security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = [MeetingView])))]
pub async fn list(
    State(state): State<AppState>,
    Authed(user): Authed,
) -> Result<ApiJson<Vec<MeetingView>>, ApiError> {
    let ms = state.store.meetings_of(user.id).await?;
    Ok(ApiJson(ms.iter().map(|m| view(&state, m)).collect()))
}

/// One of the host's meetings.
#[utoipa::path(get, path = "/api/v1/meetings/{id}", params(("id" = String, Path)), security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = MeetingView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
) -> Result<ApiJson<MeetingView>, ApiError> {
    let m = owned(&state, &user, &id).await?;
    Ok(ApiJson(view(&state, &m)))
}

/// Change title, passcode or settings. A running meeting takes them at once.
#[utoipa::path(patch, path = "/api/v1/meetings/{id}", params(("id" = String, Path)), request_body = UpdateMeeting, security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 200, body = MeetingView), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateMeeting>,
) -> Result<ApiJson<MeetingView>, ApiError> {
    let mut m = owned(&state, &user, &id).await?;
    if let Some(t) = &req.title {
        m.title = clean_title(t)?;
    }
    apply_settings(&mut m, &req.settings)?;
    if req.unschedule {
        if req.starts_at.is_some() || req.duration_minutes.is_some() {
            return Err(ApiError::Invalid(
                "unschedule cannot come with starts_at or duration_minutes".into(),
            ));
        }
        m.starts_at = None;
        m.duration_minutes = None;
    }
    apply_schedule(&mut m, req.starts_at, req.duration_minutes)?;
    let passcode = match (
        req.settings.passcode_required,
        req.passcode,
        req.regenerate_passcode,
    ) {
        (Some(false), None, false) => None,
        (Some(false), _, _) => {
            return Err(ApiError::Invalid(
                "a passcode was given but passcode_required is false".into(),
            ));
        }
        (_, Some(_), true) => {
            return Err(ApiError::Invalid(
                "give a passcode or ask to regenerate it, not both".into(),
            ));
        }
        (_, Some(p), false) => Some(clean_passcode(&p)?),
        (_, None, true) => Some(generate_passcode()),
        (Some(true), None, false) => Some(m.passcode.clone().unwrap_or_else(generate_passcode)),
        (None, None, false) => m.passcode.clone(),
    };
    if passcode != m.passcode {
        set_passcode(&state, &mut m, passcode).await?;
    }
    state.store.update_meeting(&m).await?;
    state
        .rooms
        .deliver_if_running(m.id, RoomCmd::Input(Input::Reconfigure(m.core_config())))
        .await;
    Ok(ApiJson(view(&state, &m)))
}

/// Delete a meeting; if it is running it ends for everyone.
#[utoipa::path(delete, path = "/api/v1/meetings/{id}", params(("id" = String, Path)), security(("session_cookie" = []), ("api_token" = [])),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Authed(user): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let m = owned(&state, &user, &id).await?;
    state
        .rooms
        .deliver_if_running(m.id, RoomCmd::Input(Input::End(EndReason::Deleted)))
        .await;
    state.store.delete_meeting(m.id).await?;
    tracing::info!(meeting = %m.id, "meeting deleted");
    Ok(StatusCode::NO_CONTENT)
}
