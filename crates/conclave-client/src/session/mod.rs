//! A whole client session: join over the WebSocket, wait to be admitted, then
//! run the media peer on a UDP socket (and over ICE-TCP when UDP does not get
//! through: [`crate::tcp`]) until the time is up or the meeting ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use conclave_proto::{
    ClientMessage, EndReason, MediaKind, MeetingId, Participant, ParticipantId, ServerMessage,
};
use tokio::net::UdpSocket;

use crate::appmsg::{self, Decoded};
use crate::e2ee::{Change, E2ee};
use crate::features::{Features, HELP, Sender};
use crate::invite::Invite;
use crate::ivf::IvfReader;
use crate::media::{ClientPeer, PeerError, PeerStats, SourceMedia};
use crate::record::Recording;
use crate::relay::{RelayError, RelayFallback};
use crate::signaling::{Admission, Signaling, SignalingError};
use crate::tcp::TcpFallback;
use str0m::RtcError;

mod api;
mod reconnect;
pub use crate::features::Command;
pub use api::{
    E2eeReport, JoinOptions, LeafIdentity, MediaOptions, Progress, SIMULCAST_RIDS, SentChat,
    SessionEvent, SessionReport, Until, code_change_line,
};

/// How soon a chat message MLS would not encrypt yet is tried again.
const CHAT_RETRY: Duration = Duration::from_millis(100);

/// Active speaker announcements kept in a report, at most.
const MAX_SPEAKERS_KEPT: usize = 1024;

/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 2048;

/// One try at taking the seat back: connecting and the answer to `resume`.
const RESUME_TRY: Duration = Duration::from_secs(5);

/// How long a breakout move waits for its connection and the `joined`.
const MOVE_PATIENCE: Duration = Duration::from_secs(15);
/// Peer connections that failed (DTLS or ICE) a session replaces with a
/// new one before such a failure ends it: enough to outlast a handshake
/// starved on a loaded machine or a path that died, not a loop forever on a
/// network that never carries media.
const MEDIA_RESTARTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Signaling(#[from] SignalingError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("{path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("end-to-end encryption: {0}")]
    E2ee(#[from] conclave_e2ee::E2eeError),
    #[error("TURN relay: {0}")]
    Relay(#[from] RelayError),
    /// [`JoinOptions::stop`] came before admission: the client left the
    /// waiting room (or never reached it) and the meeting never saw it join.
    #[error("stopped before being admitted")]
    Stopped,
}

fn read_ivf(path: &Path) -> Result<SourceMedia, SessionError> {
    let input = |source| SessionError::Input {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(input)?;
    let mut reader = IvfReader::new(std::io::BufReader::new(file)).map_err(input)?;
    let mut frames = Vec::new();
    while let Some(f) = reader.next_frame().map_err(input)? {
        frames.push(f);
    }
    let h = reader.header;
    Ok(SourceMedia::vp8_from_ivf(
        frames,
        h.timebase_num,
        h.timebase_den,
    ))
}

fn read_ogg(path: &Path) -> Result<SourceMedia, SessionError> {
    let input = |source| SessionError::Input {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(input)?;
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut packets = Vec::new();
    loop {
        match reader.read_packet() {
            Ok(Some(p)) => packets.push(p.data),
            Ok(None) => break,
            Err(e) => {
                return Err(input(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e,
                )));
            }
        }
    }
    // The first two packets are the OpusHead and OpusTags headers.
    if packets.len() < 2 || !packets[0].starts_with(b"OpusHead") {
        return Err(input(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an Ogg Opus file",
        )));
    }
    Ok(SourceMedia::Opus {
        packets: packets.split_off(2),
    })
}

/// People kept in a report, at most (those who left included).
const MAX_PEOPLE_KEPT: usize = 10_000;

/// Chat messages (and epochs) kept in a report, at most.
const MAX_CHATS_KEPT: usize = 1000;

/// Commands typed and not sent yet (outside the group, or MLS would not
/// encrypt yet), at most.
const MAX_PENDING_COMMANDS: usize = 64;

/// What the group said that the person at the client is told of.
enum Heard {
    Chat { from: String, text: String },
    App { from: String, text: String },
    Epoch,
}

/// Lets the MLS member see every server message first, then passes it on.
fn observe(
    msg: Option<ServerMessage>,
    e2ee: Option<&mut E2ee>,
    peer: &mut ClientPeer,
    seen: &mut E2eeReport,
    heard: &mut Vec<Heard>,
) -> Option<ServerMessage> {
    if let (Some(e), Some(m)) = (e2ee, msg.as_ref()) {
        match e.handle(m) {
            Ok(Some(Change::Epoch(keys, send))) => {
                peer.set_epoch_keys(&keys, send, Instant::now());
                let hidden = e.roster_check().not_announced;
                if !hidden.is_empty() {
                    tracing::warn!(
                        members = ?hidden,
                        "the encrypted group holds members the server did not announce"
                    );
                }
                if seen.epochs.len() < MAX_CHATS_KEPT {
                    seen.epochs.push((e.epoch(), e.security_code(), e.roster()));
                }
                heard.push(Heard::Epoch);
            }
            Ok(Some(Change::Chat { from, text })) => {
                if seen.chats.len() < MAX_CHATS_KEPT {
                    seen.chats.push((from.clone(), text.clone()));
                }
                heard.push(Heard::Chat { from, text });
            }
            Ok(Some(Change::App { from, text })) => heard.push(Heard::App { from, text }),
            Ok(Some(Change::Removed)) => seen.removed = true,
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, kind = m.kind(), "MLS message not processed"),
        }
    }
    msg
}

/// The next chat message of a member that sends them on a timer, recorded in
/// `seen`; `None` while it is outside the group or MLS will not encrypt yet.
fn chat_message(e: &mut E2ee, me: ParticipantId, seen: &mut E2eeReport) -> Option<ClientMessage> {
    if !e.in_group() || seen.removed {
        return None;
    }
    let text = format!("chat {me} {}", seen.sent_count + 1);
    match e.chat(&text) {
        Ok(msg) => {
            seen.sent_count += 1;
            if seen.sent.len() < MAX_CHATS_KEPT {
                seen.sent.push(SentChat {
                    text,
                    at: SystemTime::now(),
                    epoch: e.epoch(),
                    roster: e.roster(),
                });
            }
            Some(msg)
        }
        Err(err) => {
            tracing::debug!(error = %err, "chat message waits");
            seen.chat_deferred += 1;
            None
        }
    }
}

/// Joins, runs the media for `duration`, and reports.
pub async fn run(opts: JoinOptions) -> Result<SessionReport, SessionError> {
    run_with(MediaOptions::default(), opts).await
}

/// [`run`], with simulcast, audio levels or view sizes.
pub async fn run_with(
    extra: MediaOptions,
    opts: JoinOptions,
) -> Result<SessionReport, SessionError> {
    run_interactive(extra, opts, None).await
}

/// [`run_with`], also taking what a person types ([`Command`]: chat,
/// hands, reactions, poll answers) from `commands`, and telling what the
/// group says back to [`MediaOptions::events`].
pub async fn run_interactive(
    extra: MediaOptions,
    opts: JoinOptions,
    commands: Option<tokio::sync::mpsc::UnboundedReceiver<Command>>,
) -> Result<SessionReport, SessionError> {
    let sources = read_sources(&opts, &extra)?;
    let stop = opts.stop.clone().unwrap_or_default();
    let (mut sig, admission, recorded) = join(&opts, &extra, &stop).await?;
    let admitted_wall = SystemTime::now();
    let relay = RelayFallback::new(
        &admission.ice_servers,
        extra.relay_only,
        extra.ca_file.as_deref(),
    )?;
    relay.check()?;
    let rejoin = Rejoin {
        opts: opts.clone(),
        extra: extra.clone(),
        sources: sources.clone(),
    };
    let guest_cookie = sig.guest_cookie().map(str::to_string);
    let (socket, mut peer) = start_media(&mut sig, &opts, &extra, sources).await?;
    let views = ViewSizes::new(&extra.view_sizes, tokio::time::Instant::now());
    let e2ee = join_group(
        opts.outside_group,
        extra.leaf_identity.as_ref(),
        &admission,
        &mut peer,
        &mut sig,
    )
    .await?;
    let recording = start_recording(opts.record.as_deref(), &mut peer)?;
    let people = admission
        .participants
        .iter()
        .map(|p| (p.id, p.clone()))
        .collect();
    let mut live = Live {
        admission,
        admitted_wall,
        people,
        // As the waiting room last said (and told `events`).
        others_recording: recorded,
        last_code: String::new(),
        events: extra.events.clone(),
        sig,
        socket,
        tcp: TcpFallback::new(!extra.no_udp),
        tcp_enabled: !extra.relay_only,
        relay,
        peer,
        e2ee,
        e2ee_seen: E2eeReport::default(),
        recording,
        views,
        active_speakers: Vec::new(),
        features: Features::default(),
        commands,
        pending: std::collections::VecDeque::new(),
        heard: Vec::new(),
        left: std::collections::BTreeSet::new(),
        names: crate::names::Names::new(extra.trusted_providers.clone())
            .with_unreachable(extra.unreachable_providers.clone()),
        rejoin,
        mls_received: 0,
        rebuilt: false,
        moved: false,
        reconnects: 0,
        media_restarts: 0,
        guest_cookie,
        moving: None,
        parent: None,
    };
    live.note_recording();
    let end_at = tokio::time::Instant::now() + opts.duration;
    let (ended_early, stopped) = live
        .media_loop(
            extra.chat_every,
            extra.stats_every,
            end_at,
            &stop,
            opts.until.as_ref(),
        )
        .await?;
    live.report(ended_early, stopped).await
}

/// Everything to send, read before connecting so a bad file fails the run
/// before anyone sees this client join.
fn read_sources(
    opts: &JoinOptions,
    extra: &MediaOptions,
) -> Result<Vec<SourceMedia>, SessionError> {
    let mut sources = Vec::new();
    if let Some(p) = &opts.send_ivf {
        sources.push(read_ivf(p)?);
    }
    if !extra.simulcast_ivf.is_empty() {
        let mut layers = Vec::new();
        for (p, rid) in extra.simulcast_ivf.iter().zip(SIMULCAST_RIDS) {
            if let SourceMedia::Vp8 { frames } = read_ivf(p)? {
                layers.push((rid.to_string(), frames));
            }
        }
        sources.push(SourceMedia::Vp8Simulcast { layers });
    }
    if let Some(p) = &opts.send_ogg {
        sources.push(read_ogg(p)?);
    }
    if opts.synthetic {
        sources.push(SourceMedia::Synthetic {
            video: true,
            bytes: 1100,
            fps: 130,
        });
        sources.push(SourceMedia::Synthetic {
            video: false,
            bytes: 100,
            fps: 50,
        });
    }
    Ok(sources)
}

/// Connects and joins with the passcode given (else the invite's), waiting
/// in the waiting room up to `patience` until admitted, or until `stop`:
/// then it says `leave` (the hosts see it go at once) and ends with
/// [`SessionError::Stopped`].
/// Also says whether the waiting room last said the meeting is recorded
/// (told to [`MediaOptions::events`] as it changed).
async fn join(
    opts: &JoinOptions,
    extra: &MediaOptions,
    stop: &tokio::sync::Notify,
) -> Result<(Signaling, Admission, bool), SessionError> {
    let connect = Signaling::connect_with(
        &opts.invite,
        opts.token.as_deref(),
        extra.ca_file.as_deref(),
    );
    let mut sig = tokio::select! {
        sig = connect => sig?,
        () = stop.notified() => return Err(SessionError::Stopped),
    };
    let passcode = opts
        .passcode
        .clone()
        .or_else(|| opts.invite.passcode.clone());
    let mut recorded = false;
    let mut note = |now: bool| {
        recorded = now;
        if let Some(events) = &extra.events {
            let _ = events.send(SessionEvent::Recording(now));
        }
    };
    let admitted = tokio::select! {
        admitted = sig.join_noting(
            &opts.name,
            passcode.as_deref(),
            opts.record.is_some(),
            opts.patience,
            &mut note,
        ) => Some(admitted?),
        () = stop.notified() => None,
    };
    let Some(admission) = admitted else {
        tracing::info!("stopped while waiting: leaving");
        sig.close().await;
        return Err(SessionError::Stopped);
    };
    tracing::info!(participant = %admission.you, "admitted");
    Ok((sig, admission, recorded))
}

/// Says what this client sends (the server forwards only media the meeting
/// allows), binds the media socket and offers the tracks.
async fn start_media(
    sig: &mut Signaling,
    opts: &JoinOptions,
    extra: &MediaOptions,
    sources: Vec<SourceMedia>,
) -> Result<(UdpSocket, ClientPeer), SessionError> {
    let sending = (
        opts.send_ogg.is_some() || opts.synthetic,
        opts.send_ivf.is_some() || opts.synthetic || !extra.simulcast_ivf.is_empty(),
    );
    if sending != (false, false) {
        sig.send(&ClientMessage::SetMedia {
            audio: Some(sending.0),
            video: Some(sending.1),
            screen: None,
        })
        .await?;
    }
    let socket = UdpSocket::bind(SocketAddr::new(opts.bind, 0)).await?;
    let local = socket.local_addr()?;
    let (mut peer, offer) = if extra.no_udp || extra.relay_only {
        ClientPeer::new_tcp_only(sources, Instant::now())?
    } else {
        ClientPeer::new(local, sources, Instant::now())?
    };
    peer.set_audio_level(extra.audio_level);
    peer.open_received(!extra.count_received_only);
    sig.send(&offer).await?;
    Ok((socket, peer))
}

/// The E2EE member: it hands in its key package and knows whom the server
/// announced, and from then on the peer takes only frames it can decrypt.
/// `None` outside the group (tests looking at what the server sees).
async fn join_group(
    outside_group: bool,
    identity: Option<&LeafIdentity>,
    admission: &Admission,
    peer: &mut ClientPeer,
    sig: &mut Signaling,
) -> Result<Option<E2ee>, SessionError> {
    if outside_group {
        return Ok(None);
    }
    peer.require_e2ee();
    let mut e = new_member(admission.you, identity)?;
    e.set_participants(admission.participants.iter().map(|p| p.id));
    for m in e.take_messages() {
        sig.send(&m).await?;
    }
    Ok(Some(e))
}

/// A new MLS member as `you`, signing as `identity` when given (a
/// verified name) else with a key of its own.
fn new_member(you: ParticipantId, identity: Option<&LeafIdentity>) -> Result<E2ee, SessionError> {
    Ok(match identity {
        Some(id) => {
            let member = conclave_e2ee::Member::with_signing_key(
                &you.0.to_string(),
                &id.secret,
                &id.public,
                Some(id.binding.clone()),
            )?;
            E2ee::with_member(you, member)?
        }
        None => E2ee::new(you)?,
    })
}

/// A recording into `dir`, if asked for; the peer then keeps every frame it
/// receives for it.
fn start_recording(
    dir: Option<&Path>,
    peer: &mut ClientPeer,
) -> Result<Option<Recording>, SessionError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    peer.keep_frames(true);
    let recording = Recording::new(dir).map_err(|source| SessionError::Input {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(Some(recording))
}

/// The view sizes still due ([`MediaOptions::view_sizes`]), the one in force
/// and the videos already told it.
struct ViewSizes {
    /// Latest first, so the next due is last.
    due: Vec<(Duration, u32, u32)>,
    admitted_at: tokio::time::Instant,
    current: Option<(u32, u32)>,
    told: Vec<(ParticipantId, MediaKind)>,
}

impl ViewSizes {
    fn new(sizes: &[(Duration, u32, u32)], admitted_at: tokio::time::Instant) -> Self {
        let mut due = sizes.to_vec();
        due.sort_by_key(|v| std::cmp::Reverse(v.0));
        ViewSizes {
            due,
            admitted_at,
            current: None,
            told: Vec::new(),
        }
    }

    /// The `view_size` messages due now: a new size goes to every video
    /// received, and the one in force to videos that appeared since.
    fn messages(&mut self, stats: &PeerStats) -> Vec<ClientMessage> {
        while self
            .due
            .last()
            .is_some_and(|v| self.admitted_at + v.0 <= tokio::time::Instant::now())
        {
            if let Some((_, w, h)) = self.due.pop() {
                self.current = Some((w, h));
                self.told.clear();
            }
        }
        let Some((width, height)) = self.current else {
            return Vec::new();
        };
        let videos: Vec<(ParticipantId, MediaKind)> = stats
            .received
            .values()
            .filter_map(|t| Some((t.participant?, t.kind?)))
            .filter(|(p, k)| {
                matches!(k, MediaKind::Video | MediaKind::Screen) && !self.told.contains(&(*p, *k))
            })
            .collect();
        self.told.extend(&videos);
        videos
            .into_iter()
            .map(|(participant, kind)| ClientMessage::ViewSize {
                participant,
                kind,
                width,
                height,
            })
            .collect()
    }
}

/// An admitted session's moving parts, from the media loop to the report.
struct Live {
    admission: Admission,
    admitted_wall: SystemTime,
    /// Everyone announced so far (those who left kept, for their names).
    people: BTreeMap<ParticipantId, Participant>,
    /// Someone else records the meeting, as last told to `events`.
    others_recording: bool,
    /// The security code last told to `events`.
    last_code: String,
    events: Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>,
    sig: Signaling,
    socket: UdpSocket,
    tcp: TcpFallback,
    /// Not with `relay_only`: then the relay is the only path.
    tcp_enabled: bool,
    relay: RelayFallback,
    peer: ClientPeer,
    e2ee: Option<E2ee>,
    e2ee_seen: E2eeReport,
    recording: Option<Recording>,
    views: ViewSizes,
    active_speakers: Vec<ParticipantId>,
    /// Whose word each member's name is, as last told.
    names: crate::names::Names,
    /// Hands and the poll as the group's messages left them.
    features: Features,
    /// What the person at the client types, if anyone does; `None` after its end.
    commands: Option<tokio::sync::mpsc::UnboundedReceiver<Command>>,
    /// Typed, not sent yet: outside the group, or MLS would not encrypt yet.
    pending: std::collections::VecDeque<Command>,
    /// What the group said since the last wake, to tell.
    heard: Vec<Heard>,
    /// Those the server said left (still in `people`, for their names).
    left: std::collections::BTreeSet<ParticipantId>,
    /// What starting again after a resume takes.
    rejoin: Rejoin,
    /// MLS messages taken in for this seat, for `resume` to say: the
    /// server sends again those a dying socket lost.
    mls_received: u64,
    /// The group was set up again after a resume; its first code is told
    /// as such.
    rebuilt: bool,
    /// A meeting was entered by a breakout move; its group's first code
    /// is told as such.
    moved: bool,
    reconnects: u32,
    /// Failed peer connections replaced so far ([`MEDIA_RESTARTS`]).
    media_restarts: u32,
    /// The guest identity the server gave this client, presented again
    /// with a breakout ticket (drawn for that identity).
    guest_cookie: Option<String>,
    /// A breakout move the last server message asked for ([`Live::follow`]).
    moving: Option<Move>,
    /// While in a breakout room: the meeting that opened it.
    parent: Option<Parent>,
}

/// Where a breakout move takes this client.
enum Move {
    /// Into a room (`breakout_move`): its ID and name, the ticket into it
    /// and the one back.
    Into {
        room: MeetingId,
        name: String,
        ticket: String,
        return_ticket: String,
    },
    /// The room closed (`ended`, `breakout_closed`): back to its parent.
    Back,
}

/// The meeting a breakout room was opened from, and the ticket back.
struct Parent {
    invite: Invite,
    return_ticket: String,
}

/// What a session needs to take its seat back and send again after the
/// meeting socket dropped ([`Live::reconnect`]).
struct Rejoin {
    opts: JoinOptions,
    extra: MediaOptions,
    sources: Vec<SourceMedia>,
}

/// How a reconnection ended.
enum Rejoined {
    Back,
    /// The seat is gone: why, for the report.
    Not(String),
    /// [`JoinOptions::stop`] came meanwhile.
    Stopped,
}

/// Whether a session error is the meeting socket failing (then the seat
/// is taken back), not something to end the session for.
fn socket_lost(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Signaling(SignalingError::Socket(_) | SignalingError::Closed)
    )
}

/// The MLS messages `resume.mls_received` counts (docs/protocol.md).
fn mls_counted(msg: &ServerMessage) -> bool {
    matches!(
        msg,
        ServerMessage::MlsCreateGroup { .. }
            | ServerMessage::MlsMessage { .. }
            | ServerMessage::MlsWelcome { .. }
            | ServerMessage::MlsCommitRequest
            | ServerMessage::MlsUpdateRequest
    )
}

/// One try at taking the seat back: connect through the invite's address
/// (in a cluster, whichever node answers relays to the meeting's owner),
/// `resume`, and read until the answer. The socket comes back with a
/// `joined`.
async fn try_resume(
    invite: &Invite,
    api_token: Option<&str>,
    ca_file: Option<&Path>,
    resume: ClientMessage,
    last_group: Option<&str>,
    r: &mut reconnect::Reconnect,
) -> (reconnect::Answer, Option<(Signaling, ServerMessage)>) {
    use reconnect::Answer;
    let mut sig = match Signaling::connect_with(invite, api_token, ca_file).await {
        Ok(sig) => sig,
        Err(e) => {
            tracing::debug!(error = %e, "reconnecting: no connection");
            return (Answer::Retry { after: None }, None);
        }
    };
    if let Err(e) = sig.send(&resume).await {
        tracing::debug!(error = %e, "reconnecting: resume not sent");
        return (Answer::Retry { after: None }, None);
    }
    loop {
        let msg = match sig.recv().await {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(error = %e, "reconnecting: no answer");
                None
            }
        };
        match r.answer(msg.as_ref(), last_group, Instant::now()) {
            Answer::Pending => continue,
            a @ Answer::Resumed { .. } => return (a, msg.map(|m| (sig, m))),
            other => {
                tracing::info!(answer = ?other, "reconnecting: resume not taken");
                return (other, None);
            }
        }
    }
}

/// The next command typed; never, once there is no one typing.
async fn next_command(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Command>>,
) -> Option<Command> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Live {
    /// Runs the media until `end_at`, a `stop`, `until` holds, or the
    /// meeting lets this client go (then why, for the report), and whether
    /// `stop` ended it.
    async fn media_loop(
        &mut self,
        chat_every: Option<Duration>,
        stats_every: Option<Duration>,
        end_at: tokio::time::Instant,
        stop: &tokio::sync::Notify,
        until: Option<&Until>,
    ) -> Result<(Option<String>, bool), SessionError> {
        let never = end_at + Duration::from_secs(86_400);
        let mut chat_at = match chat_every {
            Some(every) => tokio::time::Instant::now() + every,
            None => never,
        };
        let mut stats_at = match stats_every {
            Some(every) => tokio::time::Instant::now() + every,
            None => never,
        };
        let mut next = Instant::now();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let wake = tokio::time::Instant::from_std(next);
            tokio::select! {
                () = tokio::time::sleep_until(end_at) => return Ok((None, false)),
                () = stop.notified() => return Ok((None, true)),
                msg = self.sig.recv() => {
                    let msg = match msg {
                        Ok(Some(m)) => Some(m),
                        Ok(None) | Err(SignalingError::Socket(_)) => None,
                        Err(e) => return Err(e.into()),
                    };
                    match msg {
                        Some(m) => {
                            if let Some(why) = self.on_message(Some(m))? {
                                return Ok((Some(why), false));
                            }
                            if let Some(mv) = self.moving.take() {
                                match self.follow(mv, stop).await? {
                                    Rejoined::Back => next = Instant::now(),
                                    Rejoined::Not(why) => return Ok((Some(why), false)),
                                    Rejoined::Stopped => return Ok((None, true)),
                                }
                            }
                        }
                        None => match self.reconnect(stop).await? {
                            Rejoined::Back => next = Instant::now(),
                            Rejoined::Not(why) => return Ok((Some(why), false)),
                            Rejoined::Stopped => return Ok((None, true)),
                        },
                    }
                }
                recv = self.socket.recv_from(&mut buf) => {
                    let (n, from) = recv?;
                    let taken = self.peer.handle_datagram(from, &buf[..n], Instant::now());
                    self.unless_media_failed(taken).await?;
                }
                Some((from, local, frame)) = self.tcp.recv() => {
                    let taken = self.peer.handle_tcp_frame(from, local, &frame, Instant::now());
                    self.unless_media_failed(taken).await?;
                }
                event = self.relay.next() => {
                    self.relay.handle(event, &mut self.peer, Instant::now())?;
                }
                () = tokio::time::sleep_until(wake) => {
                    let timed = self.peer.handle_timeout(Instant::now());
                    next = self.unless_media_failed(timed).await?.unwrap_or_else(Instant::now);
                }
                () = tokio::time::sleep_until(chat_at) => {
                    match self.send_chat(self.admission.you, chat_every).await {
                        Ok(at) => chat_at = at,
                        // The next read finds the socket closed and resumes.
                        Err(e) if socket_lost(&e) => chat_at = tokio::time::Instant::now() + CHAT_RETRY,
                        Err(e) => return Err(e),
                    }
                }
                cmd = next_command(&mut self.commands) => match cmd {
                    Some(cmd) if self.pending.len() < MAX_PENDING_COMMANDS => self.pending.push_back(cmd),
                    Some(_) => self.tell(SessionEvent::Notice("Too much typed before joining the encrypted group; that line was not sent.".into())),
                    None => self.commands = None,
                },
                () = tokio::time::sleep_until(stats_at) => {
                    stats_at = tokio::time::Instant::now() + stats_every.unwrap_or(Duration::from_secs(86_400));
                    let now = self.snapshot(None, false);
                    self.tell(SessionEvent::Stats(Box::new(now)));
                }
            }
            match self.after_wake().await {
                Ok(()) => {}
                // What was not sent is lost with the socket; the next read
                // finds it closed and takes the seat back.
                Err(e) if socket_lost(&e) => {
                    tracing::debug!(error = %e, "meeting socket lost while sending");
                }
                Err(e) => return Err(e),
            }
            if until.is_some_and(|u| u.holds(&self.progress(self.admission.you))) {
                return Ok((None, false));
            }
        }
    }

    fn progress(&self, you: ParticipantId) -> Progress<'_> {
        Progress {
            you,
            media: self.peer.stats(),
            active_speakers: &self.active_speakers,
            e2ee: &self.e2ee_seen,
        }
    }

    /// A server message, seen first by the MLS member. Returns why the
    /// session ends, if this message ends it.
    fn on_message(&mut self, msg: Option<ServerMessage>) -> Result<Option<String>, SessionError> {
        if msg.as_ref().is_some_and(mls_counted) {
            self.mls_received += 1;
        }
        let msg = observe(
            msg,
            self.e2ee.as_mut(),
            &mut self.peer,
            &mut self.e2ee_seen,
            &mut self.heard,
        );
        self.note_code();
        match msg {
            Some(
                ServerMessage::ParticipantJoined { participant }
                | ServerMessage::ParticipantUpdated { participant },
            ) => {
                if self.people.len() < MAX_PEOPLE_KEPT || self.people.contains_key(&participant.id)
                {
                    self.people.insert(participant.id, participant);
                }
                self.note_recording();
                // A server that renames someone does it here, in no epoch.
                self.note_names();
            }
            Some(ServerMessage::ParticipantLeft { participant, .. }) => {
                self.features.left(participant);
                if self.left.len() < MAX_PEOPLE_KEPT {
                    self.left.insert(participant);
                }
                // Kept for its name; records nothing any more.
                if let Some(p) = self.people.get_mut(&participant) {
                    p.recording = false;
                }
                self.note_recording();
            }
            Some(ServerMessage::MediaAnswer { sdp }) => {
                self.peer.accept_answer(&sdp, Instant::now())?;
                if self.tcp_enabled {
                    self.tcp.on_answer(&sdp, Instant::now());
                }
                self.relay.on_answer(Instant::now());
            }
            Some(ServerMessage::MediaOffer { sdp, tracks }) => {
                self.peer.accept_offer(&sdp, tracks, Instant::now())?;
            }
            Some(ServerMessage::Removed) => return Ok(Some("removed".into())),
            Some(ServerMessage::Ended {
                reason: EndReason::BreakoutClosed,
            }) if self.parent.is_some() => self.moving = Some(Move::Back),
            Some(ServerMessage::Ended { reason }) => return Ok(Some(format!("ended: {reason:?}"))),
            Some(ServerMessage::BreakoutMove {
                room,
                name,
                ticket,
                return_ticket,
                ..
            }) => {
                self.moving = Some(Move::Into {
                    room,
                    name,
                    ticket,
                    return_ticket,
                });
            }
            // Not end-to-end encrypted: the server relays the host's words.
            Some(ServerMessage::BreakoutBroadcast { from, text }) => self.tell(
                SessionEvent::Notice(format!("Message to the breakout rooms from {from}: {text}")),
            ),
            Some(ServerMessage::BreakoutClosing { seconds }) => self.tell(SessionEvent::Notice(
                format!("The breakout rooms close in {seconds} s."),
            )),
            Some(ServerMessage::Error { code, message, .. }) => {
                tracing::warn!(?code, %message, "server error");
            }
            Some(ServerMessage::LayersWanted { mid, rids }) => {
                tracing::debug!(%mid, ?rids, "layers wanted");
                self.peer.set_layers_wanted(&mid, &rids);
            }
            Some(ServerMessage::ActiveSpeaker { participant }) => {
                tracing::debug!(%participant, "active speaker");
                if self.active_speakers.len() < MAX_SPEAKERS_KEPT {
                    self.active_speakers.push(participant);
                }
            }
            Some(other) => tracing::debug!(kind = other.kind(), "signaling"),
            None => return Ok(Some("connection closed".into())),
        }
        Ok(None)
    }

    /// The meeting socket dropped: takes the seat back as the browser
    /// does, with the last resume token, through the invite's address,
    /// trying again while the meeting is not served yet (its node died and
    /// no other has taken it over) until the seat's window would pass.
    /// Back in, it sets up the MLS group again if the `joined` names a new
    /// one, and starts a new peer connection (ICE to whichever node serves
    /// the meeting now).
    async fn reconnect(&mut self, stop: &tokio::sync::Notify) -> Result<Rejoined, SessionError> {
        use reconnect::{Answer, Reconnect};
        tracing::warn!("the meeting connection dropped: reconnecting");
        self.tell(SessionEvent::Notice(
            "Connection to the meeting lost: reconnecting…".into(),
        ));
        let mut r = Reconnect::new(Instant::now(), self.admission.resume_window);
        loop {
            let Some(at) = r.next_try(Instant::now()) else {
                return Ok(Rejoined::Not(
                    "connection closed: the seat could not be taken back within its resume window"
                        .into(),
                ));
            };
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                () = stop.notified() => return Ok(Rejoined::Stopped),
            }
            let resume = ClientMessage::Resume {
                token: self.admission.resume_token.clone(),
                mls_received: self.e2ee.as_ref().map(|_| self.mls_received),
            };
            let attempt = try_resume(
                &self.rejoin.opts.invite,
                self.rejoin.opts.token.as_deref(),
                self.rejoin.extra.ca_file.as_deref(),
                resume,
                self.admission.group_id.as_deref(),
                &mut r,
            );
            let answered = tokio::select! {
                a = tokio::time::timeout(RESUME_TRY, attempt) => a,
                () = stop.notified() => return Ok(Rejoined::Stopped),
            };
            match answered {
                Ok((Answer::Resumed { new_group }, Some((sig, joined)))) => {
                    self.sig = sig;
                    self.resumed(&joined, new_group)?;
                    self.restart_media().await?;
                    return Ok(Rejoined::Back);
                }
                Ok((Answer::GiveUp(why), _)) => return Ok(Rejoined::Not(why)),
                Ok(_) => {}
                Err(_) => tracing::debug!("reconnecting: no answer in time"),
            }
        }
    }

    /// Takes in the `joined` that answered a resume: the new token, role
    /// and roster; with a new group, a new MLS member (and key package) as
    /// at the first join.
    fn resumed(&mut self, joined: &ServerMessage, new_group: bool) -> Result<(), SessionError> {
        let Some(next) = Admission::from_joined(joined) else {
            return Ok(());
        };
        self.reconnects += 1;
        let you = next.you;
        // The seat's own id is the one it was given at the first join.
        self.admission = Admission {
            you: self.admission.you,
            ..next
        };
        let participants = &self.admission.participants;
        // Who left while this seat was away is gone from the roster.
        let here: std::collections::BTreeSet<ParticipantId> =
            participants.iter().map(|p| p.id).collect();
        let gone: Vec<ParticipantId> = self
            .people
            .keys()
            .filter(|id| !here.contains(id) && !self.left.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.features.left(id);
            if self.left.len() < MAX_PEOPLE_KEPT {
                self.left.insert(id);
            }
        }
        for p in participants {
            self.left.remove(&p.id);
            if self.people.len() < MAX_PEOPLE_KEPT || self.people.contains_key(&p.id) {
                self.people.insert(p.id, p.clone());
            }
        }
        self.note_recording();
        if new_group && self.e2ee.is_some() {
            // Nothing of the old group is kept: its delivery state died
            // with its node.
            tracing::warn!("the meeting was rebuilt elsewhere: setting up its encryption again");
            self.e2ee = Some(E2ee::new(you)?);
            self.mls_received = 0;
            self.last_code.clear();
            self.rebuilt = true;
            self.tell(SessionEvent::Notice(
                "Reconnected: the meeting moved to another server and its encryption is being set up again; the security code will change."
                    .into(),
            ));
        } else {
            self.tell(SessionEvent::Notice("Reconnected.".into()));
        }
        if let Some(e) = self.e2ee.as_mut()
            && let Err(err) = e.handle(joined)
        {
            tracing::warn!(error = %err, "joined not taken in by MLS");
        }
        Ok(())
    }

    /// Follows a breakout move as the browser does: leaves this meeting,
    /// joins the room (or, when the room closed, its parent again) with the
    /// ticket, as the guest identity the ticket was drawn for, in that
    /// meeting's own MLS group (so a new security code), on a new peer
    /// connection. A refused or failed move ends the session, with why.
    async fn follow(
        &mut self,
        mv: Move,
        stop: &tokio::sync::Notify,
    ) -> Result<Rejoined, SessionError> {
        let here = self.rejoin.opts.invite.clone();
        let (invite, ticket, room_name) = match mv {
            Move::Into {
                room,
                name,
                ticket,
                return_ticket,
            } => {
                let invite = Invite {
                    meeting: room,
                    // A room admits by ticket only.
                    passcode: None,
                    ..here.clone()
                };
                self.parent = Some(Parent {
                    invite: here,
                    return_ticket,
                });
                (invite, ticket, Some(name))
            }
            Move::Back => match self.parent.take() {
                Some(p) => (p.invite, p.return_ticket, None),
                None => return Ok(Rejoined::Back),
            },
        };
        self.tell(SessionEvent::Notice(match &room_name {
            Some(name) => format!("Moving to the breakout room \"{name}\"…"),
            None => "The breakout rooms closed: going back to the main meeting…".into(),
        }));
        let connect = Signaling::connect_as(
            &invite,
            self.rejoin.opts.token.as_deref(),
            self.rejoin.extra.ca_file.as_deref(),
            self.guest_cookie.as_deref(),
        );
        let sig = tokio::select! {
            s = tokio::time::timeout(MOVE_PATIENCE, connect) => match s {
                Ok(Ok(sig)) => sig,
                Ok(Err(e)) => return Ok(Rejoined::Not(format!("breakout: {e}"))),
                Err(_) => return Ok(Rejoined::Not("breakout: no connection in time".into())),
            },
            () = stop.notified() => return Ok(Rejoined::Stopped),
        };
        // Leaves here first: the others see this member go at once.
        std::mem::replace(&mut self.sig, sig).close().await;
        self.sig
            .send(&ClientMessage::BreakoutJoin {
                name: self.rejoin.opts.name.clone(),
                ticket,
            })
            .await?;
        let joined = loop {
            let msg = tokio::select! {
                m = tokio::time::timeout(MOVE_PATIENCE, self.sig.recv()) => m,
                () = stop.notified() => return Ok(Rejoined::Stopped),
            };
            match msg {
                Ok(Ok(Some(joined @ ServerMessage::Joined { .. }))) => break joined,
                Ok(Ok(Some(ServerMessage::Error { code, message, .. }))) => {
                    return Ok(Rejoined::Not(format!(
                        "breakout: refused ({code:?}): {message}"
                    )));
                }
                Ok(Ok(Some(other))) => tracing::debug!(kind = other.kind(), "before joined"),
                Ok(Ok(None) | Err(_)) => {
                    return Ok(Rejoined::Not("breakout: the connection closed".into()));
                }
                Err(_) => return Ok(Rejoined::Not("breakout: no answer in time".into())),
            }
        };
        self.rejoin.opts.invite = invite;
        self.entered(&joined)?;
        self.restart_media().await?;
        self.tell(SessionEvent::Notice(match &room_name {
            Some(name) => format!(
                "In the breakout room \"{name}\": its own encrypted group, so a new security code."
            ),
            None => {
                "Back in the main meeting: a new encrypted epoch, so a new security code.".into()
            }
        }));
        Ok(Rejoined::Back)
    }

    /// Takes in the `joined` of another meeting (a breakout room, or back
    /// from one): a new seat, roster and MLS member; nothing of the last
    /// meeting's group is kept.
    fn entered(&mut self, joined: &ServerMessage) -> Result<(), SessionError> {
        let Some(admission) = Admission::from_joined(joined) else {
            return Ok(());
        };
        let you = admission.you;
        self.admission = admission;
        self.people = self
            .admission
            .participants
            .iter()
            .take(MAX_PEOPLE_KEPT)
            .map(|p| (p.id, p.clone()))
            .collect();
        self.left.clear();
        self.features = Features::default();
        self.note_recording();
        if self.e2ee.is_some() {
            let mut e = new_member(you, self.rejoin.extra.leaf_identity.as_ref())?;
            e.set_participants(self.admission.participants.iter().map(|p| p.id));
            if let Err(err) = e.handle(joined) {
                tracing::warn!(error = %err, "joined not taken in by MLS");
            }
            self.e2ee = Some(e);
            self.mls_received = 0;
            self.last_code.clear();
            self.moved = true;
        }
        Ok(())
    }

    /// What the peer made of its input, unless its connection failed: a
    /// DTLS handshake or ICE that timed out is replaced by a new peer
    /// connection (a new offer, with a new ICE ufrag, which the server takes
    /// in place of the member's old peer), up to [`MEDIA_RESTARTS`] times;
    /// then `None`. Issue 23: in a crowd
    /// on a loaded machine handshakes outlasted str0m's 40 s and each such
    /// failure ended a member's whole session, E2EE group seat and all.
    async fn unless_media_failed<T>(
        &mut self,
        result: Result<T, PeerError>,
    ) -> Result<Option<T>, SessionError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(PeerError::Rtc(e @ (RtcError::Dtls(_) | RtcError::Ice(_))))
                if self.media_restarts < MEDIA_RESTARTS =>
            {
                self.media_restarts += 1;
                tracing::warn!(error = %e, "media connection failed; starting a new one");
                self.restart_media().await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A new peer connection after a resume (the old one died with the
    /// old socket and, in a cluster, perhaps with its node) or a failed one.
    async fn restart_media(&mut self) -> Result<(), SessionError> {
        let extra = &self.rejoin.extra;
        let relay = RelayFallback::new(
            &self.admission.ice_servers,
            extra.relay_only,
            extra.ca_file.as_deref(),
        )?;
        relay.check()?;
        let mut old = std::mem::replace(&mut self.relay, relay);
        old.close().await;
        let (socket, mut peer) = start_media(
            &mut self.sig,
            &self.rejoin.opts,
            &self.rejoin.extra,
            self.rejoin.sources.clone(),
        )
        .await?;
        if let Some(e) = &self.e2ee {
            peer.require_e2ee();
            if let Some(keys) = e.current_keys() {
                peer.set_epoch_keys(&keys, conclave_e2ee::SendSwitch::AtOnce, Instant::now());
            }
        }
        if let Some(rec) = self.recording.as_mut() {
            peer.keep_frames(true);
            rec.new_peer();
        }
        self.socket = socket;
        self.peer = peer;
        self.tcp = TcpFallback::new(!self.rejoin.extra.no_udp);
        self.views.told.clear();
        Ok(())
    }

    /// Sends the next chat message when one is due; returns when to try
    /// again (soon, if MLS would not encrypt it yet).
    async fn send_chat(
        &mut self,
        you: ParticipantId,
        chat_every: Option<Duration>,
    ) -> Result<tokio::time::Instant, SessionError> {
        let retry = tokio::time::Instant::now() + CHAT_RETRY;
        if let (Some(e), Some(every)) = (self.e2ee.as_mut(), chat_every)
            && let Some(msg) = chat_message(e, you, &mut self.e2ee_seen)
        {
            self.sig.send(&msg).await?;
            return Ok(tokio::time::Instant::now() + every);
        }
        Ok(retry)
    }

    /// After every wake, whatever woke it: what the peer has to send, view
    /// sizes due, the MLS member's messages, and received frames to record.
    async fn after_wake(&mut self) -> Result<(), SessionError> {
        for (to, data) in self.peer.take_transmits() {
            // A firewall on this machine refuses UDP with an error (EPERM)
            // where one on the way drops it silently: either way ICE finds
            // the other path (ICE-TCP) or says media is lost. Not a reason
            // to end the session.
            if let Err(e) = self.socket.send_to(&data, to).await {
                tracing::debug!(error = %e, %to, "media UDP send");
            }
        }
        self.tcp.step(&mut self.peer, Instant::now()).await?;
        self.relay.step(&mut self.peer, Instant::now())?;
        for msg in self.peer.take_messages() {
            self.sig.send(&msg).await?;
        }
        for msg in self.views.messages(self.peer.stats()) {
            self.sig.send(&msg).await?;
        }
        self.tell_heard();
        for msg in self.typed_messages() {
            self.sig.send(&msg).await?;
        }
        for msg in self
            .e2ee
            .as_mut()
            .map(E2ee::take_messages)
            .unwrap_or_default()
        {
            self.sig.send(&msg).await?;
        }
        if let Some(rec) = self.recording.as_mut() {
            for frame in self.peer.take_frames() {
                rec.write(&frame).map_err(|source| SessionError::Input {
                    path: rec.dir().to_path_buf(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Tells chat lines and what hands, reactions and polls changed; after
    /// a new epoch, says again that our hand is up (a newcomer cannot read
    /// earlier epochs; the others take it as no change), as the web does.
    fn tell_heard(&mut self) {
        let you = self.admission.you;
        for heard in std::mem::take(&mut self.heard) {
            match heard {
                Heard::Epoch => {
                    if self.features.hands.contains(&you)
                        && !self.pending.contains(&Command::Hand(true))
                    {
                        self.pending.push_back(Command::Hand(true));
                    }
                }
                Heard::Chat { from, text } => {
                    let Some(p) = self.sender(&from) else {
                        continue;
                    };
                    self.tell(SessionEvent::Chat {
                        from: p.id,
                        name: p.name,
                        text,
                    });
                }
                Heard::App { from, text } => {
                    let Decoded::App(msg) = appmsg::decode(&text) else {
                        tracing::debug!(%from, "application message dropped: malformed or too large");
                        continue;
                    };
                    // Gone, or never announced: nothing of theirs to show.
                    let Some(sender) = self.sender(&from) else {
                        continue;
                    };
                    if let Some(line) = self.features.apply(you, &sender, msg, Instant::now()) {
                        self.tell(SessionEvent::Notice(line));
                    }
                }
            }
        }
    }

    /// A group member by MLS identity (the participant ID), as the
    /// server's roster shows them now.
    fn sender(&self, from: &str) -> Option<Sender> {
        let id = ParticipantId(from.parse().ok()?);
        if self.left.contains(&id) {
            return None;
        }
        if id == self.admission.you {
            let p = self.people.get(&id);
            return Some(Sender {
                id,
                name: p.map_or_else(String::new, |p| p.name.clone()),
                moderates: p.is_some_and(|p| p.role.moderates()) || self.admission.role.moderates(),
            });
        }
        let p = self.people.get(&id)?;
        Some(Sender {
            id,
            name: p.name.clone(),
            moderates: p.role.moderates(),
        })
    }

    /// Seals what was typed, in order, as far as MLS lets it now; the rest
    /// waits for the next wake.
    fn typed_messages(&mut self) -> Vec<ClientMessage> {
        let mut out = Vec::new();
        let Some(e) = self.e2ee.as_mut().filter(|e| e.in_group()) else {
            return out;
        };
        if self.e2ee_seen.removed {
            return out;
        }
        let mut notices = Vec::new();
        while let Some(cmd) = self.pending.pop_front() {
            let sealed = match &cmd {
                Command::Help => {
                    notices.push(HELP.to_string());
                    continue;
                }
                Command::Chat(text) => e.chat(text),
                _ => match self.features.message_for(&cmd, Instant::now()) {
                    Ok(Some(msg)) => e.app(&msg.encode()),
                    Ok(None) => continue,
                    Err(why) => {
                        notices.push(why);
                        continue;
                    }
                },
            };
            match sealed {
                Ok(msg) => out.push(msg),
                Err(err) => {
                    // A proposal waits for its commit: after the next one.
                    tracing::debug!(error = %err, "typed message waits");
                    self.pending.push_front(cmd);
                    break;
                }
            }
        }
        for n in notices {
            self.tell(SessionEvent::Notice(n));
        }
        out
    }

    fn tell(&self, event: SessionEvent) {
        if let Some(events) = &self.events {
            // A caller that stopped listening does not stop the session.
            let _ = events.send(event);
        }
    }

    /// Tells a new security code (and the group's roster against the
    /// server's) once per change.
    fn note_code(&mut self) {
        let Some(e) = self.e2ee.as_ref().filter(|e| e.in_group()) else {
            return;
        };
        let code = e.security_code();
        if code == self.last_code {
            return;
        }
        self.last_code.clone_from(&code);
        let check = e.roster_check();
        let rebuilt = std::mem::take(&mut self.rebuilt);
        let moved = std::mem::take(&mut self.moved);
        let event = SessionEvent::SecurityCode {
            rebuilt,
            moved,
            epoch: e.epoch(),
            code,
            roster: e.roster(),
            not_announced: check.not_announced,
            not_in_group: check.not_in_group,
            names: self
                .people
                .iter()
                .map(|(id, p)| (id.0.to_string(), p.name.clone()))
                .collect(),
        };
        self.tell(event);
        self.note_names();
    }

    /// Tells whose word each member's name is, when that changed: after a
    /// new epoch (other leaves) or a name the server announces or changes.
    fn note_names(&mut self) {
        let Some(e) = self.e2ee.as_ref().filter(|e| e.in_group()) else {
            return;
        };
        let announced = self
            .people
            .values()
            .map(|p| {
                let name = conclave_e2ee::AnnouncedName {
                    name: p.name.clone(),
                    signed_in: p.signed_in,
                };
                (p.id.0.to_string(), name)
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let Some(lines) = self.names.changed(&e.leaves(), &announced, now) {
            self.tell(SessionEvent::Names(lines));
        }
    }

    /// Tells a recording by someone else starting or stopping.
    fn note_recording(&mut self) {
        let you = self.admission.you;
        let now = self.people.values().any(|p| p.id != you && p.recording);
        if now != self.others_recording {
            self.others_recording = now;
            self.tell(SessionEvent::Recording(now));
        }
    }

    /// What the report would say now (the recording's files aside).
    fn snapshot(&self, ended_early: Option<String>, stopped: bool) -> SessionReport {
        let e2ee = self.e2ee.as_ref().map(|e| {
            let check = e.roster_check();
            E2eeReport {
                epoch: e.epoch(),
                security_code: e.security_code(),
                roster: e.roster(),
                not_announced: check.not_announced,
                not_in_group: check.not_in_group,
                ..self.e2ee_seen.clone()
            }
        });
        SessionReport {
            admission: self.admission.clone(),
            admitted_at: self.admitted_wall,
            ended_at: SystemTime::now(),
            media: self.peer.stats().clone(),
            active_speakers: self.active_speakers.clone(),
            recorded: Vec::new(),
            e2ee,
            ended_early,
            stopped,
            people: self.people.clone(),
            recording: self.others_recording,
            reconnects: self.reconnects,
        }
    }

    /// Closes the connection and the recording, and says what happened.
    async fn report(
        mut self,
        ended_early: Option<String>,
        stopped: bool,
    ) -> Result<SessionReport, SessionError> {
        let mut report = self.snapshot(ended_early, stopped);
        self.relay.close().await;
        self.sig.close().await;
        report.recorded = match self.recording {
            Some(rec) => {
                let dir = rec.dir().to_path_buf();
                rec.finish()
                    .map_err(|source| SessionError::Input { path: dir, source })?
            }
            None => Vec::new(),
        };
        Ok(report)
    }
}
