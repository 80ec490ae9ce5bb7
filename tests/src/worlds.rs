//! The fixtures tests start from. [`tenant_with_journey`] is the one set-up of "a tenant, the
//! webhook adapter registered as channels that post to a sink, and a journey uploaded", used
//! by [`Onboarding`], [`Example`], the crash and sandbox tests and the durability bench.

use crate::api::{event, Api};
use crate::artifacts::{artifacts, example_crate, ONBOARDING_CRATE, WEBHOOK_CRATE};
use crate::server::{Server, ServerOptions};
use crate::sink::{Received, Sink};
use crate::{ONBOARDING, WEBHOOK};
use serde_json::{json, Value};
use waymark_api::customers::Enrollment;
use waymark_api::journeys::UploadedJourney;
use waymark_api::tenants::CreatedTenant;

/// Creates tenant `tenant` on `server`; registers the webhook adapter under each of
/// `channels`, channel `name` posting to `<sink>/<name>` and allowed to reach the sink (no
/// channels without a sink); uploads `component` as journey `journey`.
pub async fn tenant_with_journey(
    server: &Server,
    tenant: &str,
    webhooks: Option<(&Sink, &[&str])>,
    journey: &str,
    component: Vec<u8>,
) -> (CreatedTenant, UploadedJourney) {
    let tenant = server.api().create_tenant(tenant).await;
    let api = server.as_tenant(&tenant);
    if let Some((sink, channels)) = webhooks {
        let webhook = artifacts().component(WEBHOOK_CRATE);
        for channel in channels {
            api.register_channel(
                channel,
                &webhook,
                json!({ "url": format!("{}/{channel}", sink.url()) }),
                json!({}),
                &[sink.authority()],
            )
            .await;
        }
    }
    let journey = api.upload_journey(journey, component).await;
    (tenant, journey)
}

/// A server, a sink, and a tenant with the onboarding journey uploaded and the `webhook`
/// channel delivering to the sink at `<sink>/webhook`.
pub struct Onboarding {
    /// The server.
    pub server: Server,
    /// Where the webhook delivers.
    pub sink: Sink,
    /// The tenant (`acme` unless chosen).
    pub tenant: CreatedTenant,
    /// The uploaded onboarding journey.
    pub journey: UploadedJourney,
}

impl Onboarding {
    /// In a temp dir, as tenant `acme`.
    pub async fn start() -> Onboarding {
        Onboarding::start_with(ServerOptions::default(), "acme").await
    }

    /// With `options`, as tenant `tenant`.
    pub async fn start_with(options: ServerOptions, tenant: &str) -> Onboarding {
        let sink = Sink::start();
        let server = Server::start(options).await;
        let component = artifacts().component(ONBOARDING_CRATE);
        let (tenant, journey) = tenant_with_journey(
            &server,
            tenant,
            Some((&sink, &[WEBHOOK])),
            ONBOARDING,
            component,
        )
        .await;
        Onboarding {
            server,
            sink,
            tenant,
            journey,
        }
    }

    /// The tenant's client for the current server process.
    pub fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// The admin client for the current server process.
    pub fn admin(&self) -> Api {
        self.server.api()
    }

    /// Posts one event and expects it accepted (not a duplicate).
    pub async fn post(&self, id: &str, customer: &str, name: &str) {
        let answer = self.api().post_events(&[event(id, customer, name)]).await;
        assert_eq!(answer.accepted, 1, "event {id} not accepted: {answer:?}");
    }

    /// Signs `customer` up and waits for their welcome at the sink.
    pub async fn sign_up(&self, customer: &str) -> Received {
        self.post(&format!("{customer}-signed-up"), customer, "signed_up")
            .await;
        self.sink.wait_for_delivery("welcome", customer).await
    }
}

/// A server, a sink, and a tenant with one journey of `examples/` uploaded and the webhook
/// adapter registered under each of `channels`, channel `name` posting to `<sink>/<name>` (so
/// [`Received::channel`] tells them apart).
pub struct Example {
    /// The server.
    pub server: Server,
    /// Where every channel delivers.
    pub sink: Sink,
    /// Tenant `acme`.
    pub tenant: CreatedTenant,
    /// The uploaded journey.
    pub journey: UploadedJourney,
}

impl Example {
    /// In a temp dir, as tenant `acme`, with journey `examples/<name>`.
    pub async fn start(name: &str, channels: &[&str]) -> Example {
        let sink = Sink::start();
        let server = Server::start(ServerOptions::default()).await;
        let component = artifacts().component(&example_crate(name));
        let (tenant, journey) =
            tenant_with_journey(&server, "acme", Some((&sink, channels)), name, component).await;
        Example {
            server,
            sink,
            tenant,
            journey,
        }
    }

    /// The tenant's client.
    pub fn api(&self) -> Api {
        self.server.as_tenant(&self.tenant)
    }

    /// The admin client.
    pub fn admin(&self) -> Api {
        self.server.api()
    }

    /// Posts events (one batch) and expects every one accepted.
    pub async fn post(&self, events: &[Value]) {
        let answer = self.api().post_events(events).await;
        assert_eq!(
            answer.accepted,
            events.len() as u64,
            "not all accepted: {answer:?}"
        );
    }

    /// This journey's report as JSON (`report` of `GET /v1/journeys/{name}/report`).
    pub async fn report(&self) -> Value {
        let answer = self.api().report(&self.journey.name).await;
        answer["report"].clone()
    }

    /// Polls `customer` until their latest run of this journey satisfies `holds`.
    pub async fn wait_for(
        &self,
        customer: &str,
        what: &str,
        holds: impl Fn(&Enrollment) -> bool,
    ) -> Enrollment {
        self.api()
            .wait_for_enrollment(customer, &self.journey.name, what, holds)
            .await
    }

    /// Waits until the sink received `template` for `customer` through `channel`; returns it.
    pub async fn delivered(&self, channel: &str, template: &str, customer: &str) -> Received {
        let matches = |r: &Received| r.channel() == channel && r.is(template, customer);
        let received = self
            .sink
            .wait_for(
                &format!("`{template}` for {customer} through {channel}"),
                |received| received.iter().any(matches),
            )
            .await;
        received.into_iter().find(matches).expect("just seen")
    }
}

/// Adaptive experiments (issue 13): signs up `{prefix}0` to `{prefix}{n-1}` in one batch
/// through `post`, and answers each one's arm of `journey`'s first experiment, in order, read
/// through `read(i)` once assigned (a cluster's test reads through every node).
pub async fn signup_wave(
    post: &Api,
    read: impl Fn(usize) -> Api,
    journey: &str,
    prefix: &str,
    n: usize,
) -> Vec<(String, String)> {
    let signups: Vec<Value> = (0..n)
        .map(|i| {
            let who = format!("{prefix}{i}");
            event(&format!("{who}-signup"), &who, "signed_up")
        })
        .collect();
    assert_eq!(post.post_events(&signups).await.accepted, n as u64);
    let mut arms = Vec::new();
    for i in 0..n {
        let who = format!("{prefix}{i}");
        let enrollment = read(i)
            .wait_for_enrollment(&who, journey, "an arm assigned", |e| !e.variants.is_empty())
            .await;
        arms.push((who, enrollment.variants[0].arm.clone()));
    }
    arms
}

/// Adaptive experiments (issue 13): every customer of `wave` on `arm` buys (posted through
/// `post`; read back through `read(i)` until their enrollment in `journey` completed), after
/// checking that Thompson sampling gave both arms customers without evidence. Answers them.
pub async fn arm_converts(
    post: &Api,
    read: impl Fn(usize) -> Api,
    journey: &str,
    wave: &[(String, String)],
    arm: &str,
) -> Vec<String> {
    let buyers: Vec<String> = wave
        .iter()
        .filter(|(_, a)| a == arm)
        .map(|(who, _)| who.clone())
        .collect();
    assert!(
        !buyers.is_empty() && buyers.len() < wave.len(),
        "both arms get customers without evidence: {wave:?}"
    );
    let bought: Vec<Value> = buyers
        .iter()
        .map(|who| event(&format!("{who}-bought"), who, "bought"))
        .collect();
    post.post_events(&bought).await;
    for (i, who) in buyers.iter().enumerate() {
        read(i)
            .wait_for_enrollment(who, journey, "completed", |e| {
                e.status == waymark_api::customers::EnrollmentStatus::Completed
            })
            .await;
    }
    buyers
}
