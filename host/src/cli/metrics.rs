//! The metrics endpoint of `wasp run --metrics ADDR` and `wasp serve`: what
//! each plugin is doing, in the Prometheus text format (OpenMetrics), read
//! from its [`Meter`] at each scrape. Off unless asked for; it serves
//! `GET /metrics` and nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use wasp_host::{Meter, MeterReading};

/// The plugins whose meters the endpoint reads, by name.
#[derive(Debug, Default)]
pub struct Plugins {
    watched: Mutex<Vec<Watched>>,
}

#[derive(Debug)]
struct Watched {
    name: String,
    meter: Arc<Meter>,
    /// Times the plugin was started again after it ended (`wasp serve`).
    restarts: u64,
}

impl Plugins {
    /// Reads `meter` as the plugin `name` from now on.
    pub fn watch(&self, name: &str, meter: Arc<Meter>) {
        self.lock().push(Watched {
            name: name.to_string(),
            meter,
            restarts: 0,
        });
    }

    /// Counts one restart of the plugin `name`.
    pub fn restarted(&self, name: &str) {
        if let Some(w) = self.lock().iter_mut().find(|w| w.name == name) {
            w.restarts += 1;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Labels of one sample.
type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one metric family: its descriptor, then each sample.
fn family<'a, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Plugins {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let readings: Vec<(String, MeterReading, u64)> = self
            .lock()
            .iter()
            .map(|w| (w.name.clone(), w.meter.reading(), w.restarts))
            .collect();
        let e = &mut encoder;
        let each = |value: fn(&MeterReading, u64) -> u64| {
            readings.iter().map(move |(name, r, restarts)| {
                (vec![("plugin", name.as_str())], value(r, *restarts))
            })
        };
        let gauges = |value| each(value).map(|(l, v)| (l, ConstGauge::new(v)));
        let counters = |value| each(value).map(|(l, v)| (l, ConstCounter::new(v)));
        family(
            e,
            "open_sockets",
            "Native sockets held for the plugin (open, or closed and lingering)",
            gauges(|r, _| r.open_sockets.into()),
        )?;
        family(
            e,
            "sent_bytes",
            "Bytes the plugin's sends handed to the network",
            counters(|r, _| r.bytes_sent),
        )?;
        family(
            e,
            "received_bytes",
            "Bytes the plugin's receives took from the network",
            counters(|r, _| r.bytes_received),
        )?;
        family(
            e,
            "messages_posted",
            "Messages posted into the plugin's queues (events and completions)",
            counters(|r, _| r.messages_posted),
        )?;
        family(
            e,
            "messages_held_back",
            "Posts that found a queue full and waited for room",
            counters(|r, _| r.messages_held_back),
        )?;
        family(
            e,
            "queue_depth",
            "Messages waiting in the plugin's queues",
            gauges(|r, _| r.queue_depth),
        )?;
        family(
            e,
            "memory_bytes",
            "Linear memory and table bytes the plugin holds",
            gauges(|r, _| r.memory_bytes),
        )?;
        family(
            e,
            "restarts",
            "Times the plugin was started again after it ended (wasp serve)",
            counters(|_, restarts| restarts),
        )?;
        let cpu = readings.iter().map(|(name, r, _)| {
            (
                vec![("plugin", name.as_str())],
                ConstCounter::new(r.cpu_time.as_secs_f64()),
            )
        });
        family(
            e,
            "cpu_seconds",
            "CPU time the plugin used (its code and the host calls it made)",
            cpu,
        )?;
        let denials = readings.iter().flat_map(|(name, r, _)| {
            r.denials.iter().map(move |(reason, count)| {
                (
                    vec![("plugin", name.as_str()), ("reason", *reason)],
                    ConstCounter::new(*count),
                )
            })
        });
        family(
            e,
            "denials",
            "Uses of the network the policy refused, by reason",
            denials,
        )
    }
}

/// The text of one scrape.
fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Binds `addr` and serves the metrics of `plugins` there until the
/// runtime ends. A bind that fails is the caller's error (a configuration
/// error of the operator).
pub async fn serve(addr: SocketAddr, plugins: Arc<Plugins>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut registry = Registry::with_prefix("wasp");
    registry.register_collector(Box::new(plugins));
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors, say: try again in a moment.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(&request, &registry)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// `GET /metrics` is the scrape; anything else is 404 or 405.
fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            scrape(registry),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "the metrics are at /metrics\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
