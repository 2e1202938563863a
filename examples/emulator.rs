//! A Kinesis emulator for demos and local runs: ferrokinesis, served over HTTP/1.1 and h2c.
//!
//! `cargo run --example emulator -- --port 4567`, then point optout at it with
//! `AWS_ENDPOINT_URL=http://127.0.0.1:4567 AWS_REGION=us-east-1` and dummy credentials.
//! (ferrokinesis's own binary needs a heavier build: OpenTelemetry and gRPC.)

use ferrokinesis::store::StoreOptions;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = 4567u16;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(p)) => {
                port = p.parse().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "--port takes a number")
                })?
            }
            _ => {
                eprintln!("usage: emulator [--port PORT]");
                std::process::exit(2);
            }
        }
    }
    let options = StoreOptions {
        create_stream_ms: 0,
        delete_stream_ms: 0,
        update_stream_ms: 0,
        shard_limit: 1000,
        ..StoreOptions::default()
    };
    let (app, _store) = ferrokinesis::create_app(options);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "Kinesis emulator (ferrokinesis) on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
