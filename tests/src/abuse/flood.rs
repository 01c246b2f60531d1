//! The floods: requests one after another on keep-alive connections (malformed bodies,
//! `begin` calls).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::background::Shared;
use super::{bodies, wire};

/// Requests one after another on a keep-alive connection from `source` (connecting again
/// whenever the broker closes it), until the budget is spent or the run stops.
pub(super) async fn keep_alive(
    shared: &Shared,
    source: IpAddr,
    budget: Option<u64>,
    request: impl Fn(u64) -> bodies::Junk,
) {
    let counters = &shared.counters;
    'connections: loop {
        if shared.stopped() {
            return;
        }
        let Some(mut stream) = shared.connect(source).await else { continue };
        let _open = counters.opened();
        loop {
            let Some(n) = shared.take(budget) else { return };
            let junk = request(n);
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let exchange = async {
                let sent =
                    wire::send(&mut stream, &wire::post_head(junk.path, junk.body.len()), &junk.body).await;
                match (sent, wire::read_answer(&mut stream).await) {
                    // A body refused part way (too large) is answered before it is all
                    // sent: the answer counts, not the broken pipe.
                    (_, Ok(answer)) => Ok(answer),
                    (Err(e), Err(_)) | (Ok(()), Err(e)) => Err(e),
                }
            };
            match exchange.await {
                Ok(answer) => {
                    counters.answered(answer.status);
                    // After a body it did not read to the end (refused before it was
                    // read: rate limited; or part way: too slow, too large), the broker
                    // closes the connection.
                    if answer.close || matches!(answer.status, 408 | 413 | 429) {
                        continue 'connections;
                    }
                }
                Err(e) => {
                    counters.failed("exchange", &e);
                    continue 'connections;
                }
            }
        }
    }
}
