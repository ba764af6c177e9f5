//! Host names in `p2pa node --bootstrap`, resolved again while the node
//! runs: after every failed dial (at most every [`MIN_GAP`]) and every
//! [`EVERY`] besides, so a peer whose address changes (a new DHCP lease, a
//! re-imaged Pi) is dialed at its new one. DNS lookups block, so this runs
//! on a thread of its own and hands new addresses to the node through its
//! feed.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use p2pa_node::io::AddressFeed;

/// How often the names resolve again when nothing asks sooner.
const EVERY: Duration = Duration::from_secs(30);
/// The least time between two resolutions asked by failed dials.
const MIN_GAP: Duration = Duration::from_secs(2);

/// The `HOST:PORT` arguments whose host is a name (not an address).
pub fn names(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| a.parse::<SocketAddr>().is_err())
        .cloned()
        .collect()
}

/// The addresses `name` resolves to now: the IPv4 ones, or all if it has
/// none (what `--bootstrap` takes at start).
fn resolve(name: &str) -> Vec<SocketAddr> {
    let all: Vec<SocketAddr> = name
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    let v4: Vec<SocketAddr> = all.iter().copied().filter(SocketAddr::is_ipv4).collect();
    if v4.is_empty() {
        all
    } else {
        v4
    }
}

/// Asks the watch to resolve again now (a dial failed); dropping it ends
/// nothing (the watch ends with the node).
#[derive(Debug, Clone)]
pub struct Nudge(Option<Sender<()>>);

impl Nudge {
    /// A dial failed: resolve the names again (at most every [`MIN_GAP`]).
    pub fn dial_failed(&self) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(());
        }
    }
}

/// Resolves `names` again after each nudge and every [`EVERY`] until the
/// node stops; `known` are the addresses the node was started with.
pub fn watch(names: Vec<String>, known: Vec<SocketAddr>, feed: AddressFeed) -> Nudge {
    if names.is_empty() {
        return Nudge(None);
    }
    let (tx, rx) = channel();
    let spawned = std::thread::Builder::new()
        .name("p2pa-resolve".into())
        .spawn(move || {
            let mut seen: BTreeSet<SocketAddr> = known.into_iter().collect();
            let mut last = Instant::now();
            while wait(&rx, last) {
                last = Instant::now();
                if !round(&names, &mut seen, &mut resolve, &mut |a| feed.add(a)) {
                    return; // the node stopped
                }
            }
        });
    match spawned {
        Ok(_) => Nudge(Some(tx)),
        Err(e) => {
            log::warn!("host names in --bootstrap will not resolve again: {e}");
            Nudge(None)
        }
    }
}

/// Waits for the next round: [`EVERY`] after `last`, or a nudge once
/// [`MIN_GAP`] has passed since `last` (nudges before that are folded into
/// it). False when the node has gone (the nudge's sender was dropped).
fn wait(nudges: &Receiver<()>, last: Instant) -> bool {
    match nudges.recv_timeout(EVERY.saturating_sub(last.elapsed())) {
        Ok(()) => {
            std::thread::sleep(MIN_GAP.saturating_sub(last.elapsed()));
            while nudges.try_recv().is_ok() {}
            true
        }
        Err(RecvTimeoutError::Timeout) => true,
        Err(RecvTimeoutError::Disconnected) => false,
    }
}

/// One round: each address a name resolves to that was not seen before goes
/// to `add`. Returns `false` once `add` does (the node stopped).
fn round(
    names: &[String],
    seen: &mut BTreeSet<SocketAddr>,
    resolve: &mut dyn FnMut(&str) -> Vec<SocketAddr>,
    add: &mut dyn FnMut(SocketAddr) -> bool,
) -> bool {
    for name in names {
        for addr in resolve(name) {
            if seen.insert(addr) {
                log::info!("{name} now resolves to {addr}: dialing it");
                if !add(addr) {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_moves_is_handed_to_the_node_once_per_new_address() {
        let names = vec!["pi.lan:7421".to_owned()];
        let a: SocketAddr = "10.0.0.5:7421".parse().unwrap_or_else(|_| unreachable!());
        let b: SocketAddr = "10.0.0.9:7421".parse().unwrap_or_else(|_| unreachable!());
        let mut seen: BTreeSet<SocketAddr> = [a].into_iter().collect();
        let answers = [vec![a], vec![b], vec![b, a]];
        let mut at = 0;
        let mut resolve = |n: &str| {
            assert_eq!(n, "pi.lan:7421");
            at += 1;
            answers.get(at - 1).cloned().unwrap_or_default()
        };
        let mut added = Vec::new();
        for _ in 0..3 {
            assert!(round(&names, &mut seen, &mut resolve, &mut |x| {
                added.push(x);
                true
            }));
        }
        assert_eq!(added, vec![b], "only the new address, once");
        // A node that stopped ends the watch.
        seen.clear();
        assert!(!round(&names, &mut seen, &mut |_| vec![a], &mut |_| false));
    }

    #[test]
    fn a_failed_dial_starts_a_round_and_a_gone_node_ends_the_watch() {
        let (tx, rx) = channel();
        let long_ago = Instant::now()
            .checked_sub(MIN_GAP * 2)
            .unwrap_or_else(Instant::now);
        let nudge = Nudge(Some(tx));
        nudge.dial_failed();
        nudge.dial_failed();
        let t = Instant::now();
        assert!(wait(&rx, long_ago), "a nudge starts a round");
        assert!(
            t.elapsed() < MIN_GAP,
            "at once: the last round was long ago"
        );
        assert!(rx.try_recv().is_err(), "both nudges folded into one round");
        drop(nudge);
        assert!(!wait(&rx, long_ago), "the node is gone");
    }

    #[test]
    fn only_names_are_watched() {
        let args = vec!["10.0.0.5:7421".to_owned(), "pi.lan:7421".to_owned()];
        assert_eq!(names(&args), vec!["pi.lan:7421".to_owned()]);
        assert!(resolve("localhost:7421").iter().all(|a| a.port() == 7421));
    }
}
