//! `sidecar-app`: the stand-in for the app container of `manifests/examples/sidecar.yaml`
//! (busybox there). Every second it `SET sidecar:<HOSTNAME> <n>` and `GET`s it back on
//! `CACHE_ADDR` (default 127.0.0.1:6379), printing `ok <n>` or `error <what>`, reconnecting
//! after errors; SIGTERM ends it with exit 0. Run by the process kubelet for every container
//! whose image is not mapcache's (it ignores the command and args it is given), it proves that
//! an app reaches its own pod's engine over the pod's localhost.

use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let address = std::env::var("CACHE_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into());
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into());
    let password = std::env::var("CACHE_PASSWORD").ok().filter(|p| !p.is_empty());
    let url = match &password {
        Some(password) => format!("redis://:{password}@{address}/"),
        None => format!("redis://{address}/"),
    };
    let key = format!("sidecar:{host}");
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        println!("error cannot install the SIGTERM handler");
        std::process::exit(1);
    };
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut counter: u64 = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => {
                println!("stopping on SIGTERM");
                return;
            }
            _ = ticker.tick() => {}
        }
        counter += 1;
        match round(&url, &mut connection, &key, counter).await {
            Ok(()) => println!("ok {counter}"),
            Err(error) => {
                println!("error {error}");
                connection = None;
            }
        }
    }
}

/// One SET + GET, connecting first if needed.
async fn round(
    url: &str,
    connection: &mut Option<redis::aio::MultiplexedConnection>,
    key: &str,
    counter: u64,
) -> Result<(), String> {
    if connection.is_none() {
        let client = redis::Client::open(url).map_err(|e| format!("client: {e}"))?;
        let connect = client.get_multiplexed_async_connection();
        let opened = tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .map_err(|_| "connect: timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        *connection = Some(opened);
    }
    let Some(conn) = connection.as_mut() else { return Err("no connection".into()) };
    let () = redis::cmd("SET")
        .arg(key)
        .arg(counter)
        .query_async(conn)
        .await
        .map_err(|e| format!("SET: {e}"))?;
    let value: Option<u64> =
        redis::cmd("GET").arg(key).query_async(conn).await.map_err(|e| format!("GET: {e}"))?;
    match value {
        Some(got) if got == counter => Ok(()),
        other => Err(format!("GET returned {other:?}, expected {counter}")),
    }
}
