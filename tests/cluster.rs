//! Sharding across agents ([cluster]): real agents share one config and one set of 100
//! targets, and each keeps exactly its share — checked in the targets API and in what
//! each one actually scraped into its spool.

mod common;

use common::{export_jsonl, wait_for, Agent, Reply, Target};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const TARGETS: usize = 100;

/// 100 targets on one loopback server: each is `?n=<i>` with a label `n` (the address is
/// the same, so the query and the label make the targets distinct).
fn config(server: &str, members: u32, member: u32, rf: u32) -> String {
    let mut c = format!(
        "[global]\nscrape_interval = \"1s\"\nscrape_timeout = \"900ms\"\n\n\
         [cluster]\nmembers_count = {members}\nmember_num = {member}\nreplication_factor = {rf}\n\n\
         [[scrape_configs]]\njob_name = \"fleet\"\n"
    );
    for i in 0..TARGETS {
        c.push_str(&format!(
            "[[scrape_configs.static_configs]]\ntargets = [\"{server}\"]\nlabels = {{ n = \"{i}\", __param_n = \"{i}\" }}\n"
        ));
    }
    c
}

/// The `n` labels of an agent's active targets, once each has been scraped.
fn active_and_up(agent: &Agent) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    wait_for("every owned target up", Duration::from_secs(30), || {
        let v = agent.targets();
        let active = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        out = active
            .iter()
            .filter_map(|t| t["labels"]["n"].as_str().map(str::to_string))
            .collect();
        !active.is_empty() && active.iter().all(|t| t["health"] == "up")
    });
    let v = agent.targets();
    let dropped = v["data"]["droppedTargetCounts"]["fleet"]
        .as_u64()
        .expect("dropped count");
    assert_eq!(
        out.len() + dropped as usize,
        TARGETS,
        "each target is either kept or dropped"
    );
    out
}

/// The `n` of every target whose `up` reached this agent's spool.
fn scraped(data: &Path) -> BTreeSet<String> {
    export_jsonl(data, &["up"])
        .into_iter()
        .filter(|s| !s.stale && s.value == 1.0)
        .filter_map(|s| s.labels.get("n").cloned())
        .collect()
}

fn all() -> BTreeSet<String> {
    (0..TARGETS).map(|i| i.to_string()).collect()
}

#[test]
fn two_members_split_100_targets_with_no_overlap_and_no_gap() {
    let server = Target::start(Reply::text("x 1\n"));
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let mut agents: Vec<Agent> = (0..2)
        .map(|m| Agent::start(dirs[m].path(), &config(&server.addr, 2, m as u32, 1)))
        .collect();
    let shares: Vec<BTreeSet<String>> = agents.iter().map(active_and_up).collect();
    let (a, b) = (&shares[0], &shares[1]);
    assert!(
        a.is_disjoint(b),
        "overlap: {:?}",
        a.intersection(b).collect::<Vec<_>>()
    );
    let union: BTreeSet<String> = a.union(b).cloned().collect();
    assert_eq!(union, all(), "every target has an owner");
    // Both members get a fair part (XXH64 is uniform; 100 targets leave some spread).
    assert!(a.len() >= 25 && b.len() >= 25, "{} / {}", a.len(), b.len());

    // Same split after a restart: it depends on the targets only.
    assert_eq!(agents[0].terminate(), 0);
    let again = Agent::start(dirs[0].path(), &config(&server.addr, 2, 0, 1));
    assert_eq!(
        &active_and_up(&again),
        a,
        "member 0 keeps its share across a restart"
    );
    agents[0] = again;

    // What each agent scraped is exactly its share.
    for (agent, share) in agents.iter_mut().zip(&shares) {
        assert_eq!(agent.terminate(), 0);
        assert_eq!(&scraped(&agent.dir.join("data")), share);
    }
}

#[test]
fn replication_factor_two_gives_every_target_to_both_members() {
    let server = Target::start(Reply::text("x 1\n"));
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let mut agents: Vec<Agent> = (0..2)
        .map(|m| Agent::start(dirs[m].path(), &config(&server.addr, 2, m as u32, 2)))
        .collect();
    for agent in &mut agents {
        assert_eq!(active_and_up(agent), all());
        assert_eq!(agent.terminate(), 0);
        assert_eq!(scraped(&agent.dir.join("data")), all());
    }
}

#[test]
fn three_members_with_two_replicas_scrape_each_target_twice() {
    let server = Target::start(Reply::text("x 1\n"));
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let agents: Vec<Agent> = (0..3)
        .map(|m| Agent::start(dirs[m].path(), &config(&server.addr, 3, m as u32, 2)))
        .collect();
    let shares: Vec<BTreeSet<String>> = agents.iter().map(active_and_up).collect();
    for n in all() {
        let owners = shares.iter().filter(|s| s.contains(&n)).count();
        assert_eq!(owners, 2, "target {n} has {owners} owners");
    }
}

#[test]
fn a_new_cluster_layout_applies_on_reload() {
    let server = Target::start(Reply::text("x 1\n"));
    let dir = tempfile::tempdir().expect("tmp");
    let agent = Agent::start(dir.path(), &config(&server.addr, 2, 1, 1));
    let share = active_and_up(&agent);
    assert!(share.len() < TARGETS);
    // Alone now: the agent takes over every target, and keeps the ones it had.
    common::write_config(dir.path(), &config(&server.addr, 1, 0, 1));
    agent.signal(libc::SIGHUP);
    wait_for("all targets after reload", Duration::from_secs(30), || {
        agent.targets()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|a| a.len() == TARGETS)
    });
    assert_eq!(active_and_up(&agent), all());
}
