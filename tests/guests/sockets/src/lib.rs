//! A journey that opens a TCP connection, so that its component imports `wasi:sockets`.
//! Journeys get no network: the host must refuse this upload and store nothing. (It is never
//! run; `decide` only has to use the network for the imports to be there.)
//!
//! It calls `wasi:sockets` through the `wasip2` bindings rather than `std::net`: std's sockets
//! go through wasi-libc's descriptor table, which imports `wasi:filesystem` as well, and then a
//! refusal naming the filesystem would pass for a refusal of sockets. This component imports
//! `wasi:sockets` and nothing else the host forbids, so only sockets can explain its refusal
//! (the `files` guest covers the filesystem alone).

use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;
use waymark_guest::prelude::*;

/// Where the journey would like to phone home: a private address, the classic SSRF target.
pub const TARGET: ((u8, u8, u8, u8), u16) = ((10, 0, 0, 1), 80);

/// The journey that wants a socket.
pub struct Sockets;

impl Journey for Sockets {
    fn describe() -> Spec {
        Spec::new("Sockets: phones home over TCP on every signup")
            .enter_on("signed_up")
            .channel("webhook")
    }

    fn decide(ctx: &Context) -> Result<Decision, String> {
        phone_home()?;
        Ok(Decision::new().send(
            "webhook",
            "escaped",
            json!({ "customer_id": ctx.customer.id }),
        ))
    }
}

/// Connects to [`TARGET`] over TCP.
fn phone_home() -> Result<(), String> {
    let (address, port) = TARGET;
    let network = instance_network();
    let socket = create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| format!("{e:?}"))?;
    socket
        .start_connect(
            &network,
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
        )
        .map_err(|e| format!("{e:?}"))?;
    socket.subscribe().block();
    socket
        .finish_connect()
        .map(|_streams| ())
        .map_err(|e| format!("{e:?}"))
}

waymark_guest::export_journey!(Sockets);
