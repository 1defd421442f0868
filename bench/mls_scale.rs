//! MLS sizes and times as a group grows to the meeting limit, natively, through the real
//! delivery service and member code:
//!
//! ```text
//! cargo run --release -p conclave-e2ee --example mls_scale -- blank 1000
//! cargo run --release -p conclave-e2ee --example mls_scale -- filled 1000
//! cargo run --release -p conclave-e2ee --example mls_scale -- needed 1000
//! cargo run --release -p conclave-e2ee --example mls_scale -- needed 300 --leave 100
//! ```
//!
//! The group grows from 1 in batches of up to 50 (one commit per batch, as the server proposes a
//! burst of admissions together). `blank`: only member 1 ever commits, as before newcomers
//! updated. `filled`: every newcomer makes one update commit right after its batch's. `needed`:
//! only the newcomers whose update would fill a parent later commits encrypt to
//! (`DeliveryService::update_would_fill`, about one per block of eight leaves), as the server
//! asks since the 150-member test showed one update epoch per newcomer to be too slow. At 100,
//! 300 and 1,000 members it prints one more commit adding one member: its size, the Welcome
//! (without the tree), the tree the server hands the newcomer, commit creation, a member
//! processing it, the newcomer joining.
//!
//! Live states: member 1 (the committer), member 2 (processes everything, for the process
//! time) and the newcomers of the current batch until they have updated; the others would
//! process the same messages on their own machines. The critical path adds, per epoch, commit
//! creation and one member's processing, and per batch one join: what a growing meeting waits
//! for when every member works in parallel.
//!
//! `--leave N` (modes `filled` and `needed`): every member stays live (so any can be asked to
//! commit), and once grown, N members other than member 1, picked at random with a fixed seed,
//! leave in one removal batch that member 1 commits. It prints member 1's next commit (an
//! update: a fresh path, no proposal; what an ordinary epoch costs) before the removals, right
//! after them, and after the refill: the delivery service asks, one at a time, the member whose
//! update fills the most blank parents (`DeliveryService::refill_candidate`, as the server does
//! after removals), until nobody's would.

use std::time::{Duration, Instant};

use conclave_e2ee::{DeliveryService, Member, Received};

const BATCH: usize = 50;
const MARKS: [usize; 3] = [100, 300, 1000];

struct Totals {
    critical: Duration,
    epochs: u64,
    largest_commit: usize,
    largest_welcome: usize,
    /// Newcomers not asked to update (mode `needed`).
    skipped: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn announce(members: &mut [Member], ids: &[String]) {
    for m in members {
        m.set_announced(ids.iter().cloned());
    }
}

/// Every live member handles `commit`; the time of member 2's (index 1) is returned.
fn everyone_handles(members: &mut [Member], commit: &[u8], skip: Option<usize>) -> Duration {
    let mut observed = Duration::ZERO;
    for (i, m) in members.iter_mut().enumerate() {
        if Some(i) == skip {
            m.confirm_commit().expect("own commit");
            continue;
        }
        let start = Instant::now();
        let r = m.handle(commit).expect("commit");
        if i == 1 {
            observed = start.elapsed();
        }
        assert!(matches!(r, Received::Commit { .. }), "{r:?}");
    }
    observed
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (filled, only_needed) = match args.next().as_deref() {
        Some("filled") => (true, false),
        Some("needed") => (true, true),
        Some("blank") | None => (false, false),
        Some(other) => panic!("mode is blank, filled or needed, not {other}"),
    };
    let limit: usize = args.next().map_or(1000, |n| n.parse().expect("a size"));
    let leave: Option<usize> = match args.next().as_deref() {
        Some("--leave") => Some(
            args.next()
                .and_then(|n| n.parse().ok())
                .expect("--leave takes a number"),
        ),
        None => None,
        Some(other) => panic!("unknown argument {other}"),
    };
    assert!(
        leave.is_none() || filled,
        "--leave needs mode filled or needed"
    );
    assert!(
        leave.is_none_or(|n| n < limit),
        "--leave N needs N < the size"
    );
    // With --leave every member stays live, for whoever is asked to refill.
    let keep_all = leave.is_some();
    println!(
        "mode {}, growing 1 -> {limit} in batches of {BATCH}",
        match (filled, only_needed) {
            (true, true) => "needed",
            (true, false) => "filled",
            _ => "blank",
        }
    );

    let mut ds = DeliveryService::new().expect("ds");
    let mut first = Member::new("1").expect("member");
    let info = first
        .create_group(b"bench", &ds.external_sender())
        .expect("group");
    ds.observe_group(&info).expect("observe");
    // members[0] commits batches, members[1] processes for the figures, then this batch's
    // newcomers until they updated.
    let mut members = vec![first];
    let mut ids = vec!["1".to_string()];
    let mut next_id = 2usize;
    let mut totals = Totals {
        critical: Duration::ZERO,
        epochs: 0,
        largest_commit: 0,
        largest_welcome: 0,
        skipped: 0,
    };
    let grow_start = Instant::now();

    let mut size = 1usize;
    while size < limit {
        // Batches end on multiples of BATCH, so the group passes each mark.
        let batch = (BATCH - size % BATCH).min(limit - size);
        // One commit adding `batch` newcomers.
        let mut newcomers = Vec::new();
        let mut proposals = Vec::new();
        for _ in 0..batch {
            let id = next_id.to_string();
            next_id += 1;
            let member = Member::new(&id).expect("member");
            let kp = member.key_package().expect("kp");
            proposals.push(ds.propose_add(&kp).expect("propose add"));
            ids.push(id);
            newcomers.push(member);
        }
        announce(&mut members, &ids);
        for p in &proposals {
            for m in members.iter_mut() {
                m.handle(p).expect("proposal");
            }
        }
        let start = Instant::now();
        let out = members[0].commit().expect("commit").expect("adds");
        let created = start.elapsed();
        ds.accept_commit(&out.commit).expect("accepted");
        let processed = everyone_handles(&mut members, &out.commit, Some(0));
        let welcome = out.welcome.expect("welcome");
        let tree = ds.ratchet_tree().expect("tree");
        totals.largest_commit = totals.largest_commit.max(out.commit.len());
        totals.largest_welcome = totals.largest_welcome.max(welcome.len());
        let mut join = Duration::ZERO;
        if filled || members.len() < 2 {
            for n in &mut newcomers {
                let start = Instant::now();
                n.join(&welcome, &tree).expect("join");
                join = join.max(start.elapsed());
            }
        }
        totals.critical += created + processed + join;
        totals.epochs += 1;
        size += batch;

        if members.len() < 2 {
            // Member 2 stays live for the process figures.
            members.push(newcomers.remove(0));
        }
        if filled {
            // Each newcomer of the batch updates in turn; the live ones process each update.
            let mut live = members;
            let mut at = live.len();
            live.append(&mut newcomers);
            let mut last_update = (0usize, Duration::ZERO);
            while at < live.len() {
                if only_needed
                    && !ds
                        .update_would_fill(live[at].participant_id())
                        .expect("a member")
                {
                    totals.skipped += 1;
                    if keep_all {
                        at += 1;
                    } else {
                        live.remove(at);
                    }
                    continue;
                }
                let start = Instant::now();
                let out = live[at].update().expect("update");
                let created = start.elapsed();
                ds.accept_commit(&out.commit).expect("update accepted");
                let processed = everyone_handles(&mut live, &out.commit, Some(at));
                totals.critical += created + processed;
                totals.epochs += 1;
                totals.largest_commit = totals.largest_commit.max(out.commit.len());
                last_update = (out.commit.len(), created);
                if keep_all {
                    at += 1;
                } else {
                    live.remove(at);
                }
            }
            members = live;
            if MARKS.contains(&size) {
                println!(
                    "  at {size}: last newcomer's update commit {} B, created in {:.2} ms",
                    last_update.0,
                    ms(last_update.1)
                );
            }
        }

        if MARKS.contains(&size) {
            measure_one_add(&mut ds, &mut members, &mut ids, &mut next_id, size);
        }
    }
    println!(
        "grown to {limit}: {} epochs ({} newcomers did not update), {:.1} s of CPU on one \
         thread here, critical path {:.2} s; largest commit {} B, largest Welcome {} B",
        totals.epochs,
        totals.skipped,
        grow_start.elapsed().as_secs_f64(),
        totals.critical.as_secs_f64(),
        totals.largest_commit,
        totals.largest_welcome,
    );
    if let Some(n) = leave {
        leave_and_refill(&mut ds, &mut members, n);
    }
}

/// Member 1 (index 0) makes an update commit that everyone applies: its size and creation time.
fn member_one_commits(ds: &mut DeliveryService, members: &mut [Member]) -> (usize, Duration) {
    update_by(ds, members, 0)
}

/// `members[at]` makes an update commit that everyone applies: its size and creation time.
fn update_by(ds: &mut DeliveryService, members: &mut [Member], at: usize) -> (usize, Duration) {
    let start = Instant::now();
    let out = members[at].update().expect("update");
    let created = start.elapsed();
    ds.accept_commit(&out.commit).expect("accepted");
    everyone_handles(members, &out.commit, Some(at));
    (out.commit.len(), created)
}

/// `n` members other than member 1 leave in one removal batch; then the refill (module docs).
fn leave_and_refill(ds: &mut DeliveryService, members: &mut Vec<Member>, n: usize) {
    let size = members.len();
    let before = member_one_commits(ds, members);
    // Pick n at random (xorshift, fixed seed: the same members every run).
    let mut pool: Vec<String> = members
        .iter()
        .skip(1)
        .map(|m| m.participant_id().to_string())
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut leaving = Vec::new();
    while leaving.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        leaving.push(pool.swap_remove((seed % pool.len() as u64) as usize));
    }
    let proposals: Vec<Vec<u8>> = leaving
        .iter()
        .map(|id| ds.propose_remove(id).expect("remove"))
        .collect();
    members.retain(|m| !leaving.iter().any(|id| id == m.participant_id()));
    let ids: Vec<String> = members
        .iter()
        .map(|m| m.participant_id().to_string())
        .collect();
    announce(members, &ids);
    for p in &proposals {
        for m in members.iter_mut() {
            m.handle(p).expect("proposal");
        }
    }
    let start = Instant::now();
    let out = members[0].commit().expect("commit").expect("removes");
    let removal_created = start.elapsed();
    ds.accept_commit(&out.commit).expect("accepted");
    everyone_handles(members, &out.commit, Some(0));
    let removal = out.commit.len();
    let after = member_one_commits(ds, members);

    let mut refills = 0usize;
    let mut largest_refill = 0usize;
    let mut refill_cpu = Duration::ZERO;
    let refill_start = Instant::now();
    let mut marks = Vec::new();
    while let Some(id) = ds.refill_candidate(|_| true).expect("a group") {
        let at = members
            .iter()
            .position(|m| m.participant_id() == id)
            .expect("a live member");
        let start = Instant::now();
        let (bytes, _) = update_by(ds, members, at);
        refill_cpu += start.elapsed();
        refills += 1;
        largest_refill = largest_refill.max(bytes);
        if refills.is_power_of_two() {
            // How member 1's commit shrinks as the refill goes on (one more epoch each).
            marks.push(format!(
                "{refills}: {} B",
                member_one_commits(ds, members).0
            ));
        }
    }
    let refill_wall = refill_start.elapsed();
    let refilled = member_one_commits(ds, members);
    println!(
        "{size} members, {n} leave in one batch (member 1's removing commit {removal} B, \
         created in {:.2} ms), {} stay",
        ms(removal_created),
        members.len()
    );
    println!(
        "  member 1's next commit: before the removals {} B ({:.2} ms); right after them {} B \
         ({:.2} ms); after {refills} refill updates {} B ({:.2} ms)",
        before.0,
        ms(before.1),
        after.0,
        ms(after.1),
        refilled.0,
        ms(refilled.1),
    );
    println!(
        "  refill: {refills} update epochs (largest {largest_refill} B), {:.1} s here with every \
         member processing each on this one thread ({:.1} s of it in the updates and their \
         processing); member 1's commit after k refills: {}",
        refill_wall.as_secs_f64(),
        refill_cpu.as_secs_f64(),
        marks.join(", "),
    );
}

/// One commit adding one member to a group of `size`: the figures of an ordinary epoch.
fn measure_one_add(
    ds: &mut DeliveryService,
    members: &mut [Member],
    ids: &mut Vec<String>,
    next_id: &mut usize,
    size: usize,
) {
    let id = next_id.to_string();
    *next_id += 1;
    let mut newcomer = Member::new(&id).expect("member");
    let proposal = ds
        .propose_add(&newcomer.key_package().expect("kp"))
        .expect("add");
    ids.push(id.clone());
    announce(members, ids);
    for m in members.iter_mut() {
        m.handle(&proposal).expect("proposal");
    }
    let start = Instant::now();
    let out = members[0].commit().expect("commit").expect("adds");
    let created = start.elapsed();
    ds.accept_commit(&out.commit).expect("accepted");
    let processed = everyone_handles(members, &out.commit, Some(0));
    let welcome = out.welcome.expect("welcome");
    let tree = ds.ratchet_tree().expect("tree");
    let start = Instant::now();
    newcomer.join(&welcome, &tree).expect("join");
    let joined = start.elapsed();
    println!(
        "  {size} + 1: commit {} B created in {:.2} ms, processed in {:.2} ms; \
         Welcome {} B (no tree); tree {} B; newcomer joins in {:.2} ms",
        out.commit.len(),
        ms(created),
        ms(processed),
        welcome.len(),
        tree.len(),
        ms(joined),
    );
    // Take the newcomer out again so the group stays at the mark's size.
    let remove = ds.propose_remove(&id).expect("remove");
    ids.pop();
    announce(members, ids);
    for m in members.iter_mut() {
        m.handle(&remove).expect("proposal");
    }
    let out = members[0].commit().expect("commit").expect("removes");
    ds.accept_commit(&out.commit).expect("accepted");
    everyone_handles(members, &out.commit, Some(0));
}
