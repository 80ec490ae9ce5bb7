//! A loopback HTTP server on its own thread and runtime, for the stand-ins of what the product
//! talks to (the webhook sink, the providers' APIs): it serves an axum app on 127.0.0.1 at an
//! ephemeral port until dropped, independent of the test's own runtime (a test may block its
//! runtime while the server must keep answering).

use std::net::SocketAddr;

/// A running loopback server; dropping it stops it and aborts open connections.
pub struct LoopbackServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopbackServer {
    /// Serves `app`; `name` names its thread.
    pub fn start(name: &str, app: axum::Router) -> LoopbackServer {
        LoopbackServer::start_counting(name, app, || {})
    }

    /// Serves `app`, calling `accepted` for every connection accepted.
    pub fn start_counting(
        name: &str,
        app: axum::Router,
        accepted: impl Fn() + Send + Sync + 'static,
    ) -> LoopbackServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind the {name}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("a nonblocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let label = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    use axum::serve::ListenerExt;
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a tokio listener")
                        .tap_io(move |_| accepted());
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result { eprintln!("{label} stopped: {e}") }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here aborts open connections.
            })
            .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"));
        LoopbackServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (append any path).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, for a channel's `allowed_hosts`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
