//! Kubernetes Events for a binding's transitions (`kubectl describe` shows them).
//!
//! kube-runtime's `Recorder` keeps every Event it published for six minutes, to turn repeats
//! into an Event series. Ours are only published when a condition changes, so repeats are rare
//! and that cache is pure cost: at start-up over 10,000 bindings it held 10,000 Events (with
//! their notes) and scanned them all on every publish. This publisher keeps nothing: one
//! `create` per transition (RBAC: `create` on `events.k8s.io` events).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

/// Normal or Warning, as `kubectl describe` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// What happened to one object.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: Kind,
    /// A reason code (UpperCamelCase, at most 128 characters).
    pub reason: String,
    /// What the event says (at most 1 kB).
    pub note: String,
    /// What the controller was doing: `Check`, `CheckPods`.
    pub action: String,
}

/// Publishes Events as one controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
}

impl Publisher {
    /// `instance` defaults to the controller name (the pod name is the usual instance).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Publisher {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
        }
    }

    /// The Event for `regarding`, as the API server stores it (built apart from sending, so
    /// it can be checked without a server).
    pub fn event(&self, notice: &Notice, regarding: &ObjectReference, now: Timestamp) -> Event {
        let name = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                // Unique per object and moment, like client-go's recorder.
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(notice.action.clone()),
            reason: Some(notice.reason.clone()),
            note: Some(notice.note.clone()),
            type_: Some(
                match notice.kind {
                    Kind::Normal => "Normal",
                    Kind::Warning => "Warning",
                }
                .to_string(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }

    /// Creates the Event in the object's namespace (`default` for cluster-scoped objects).
    pub async fn publish(
        &self,
        notice: &Notice,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let event = self.event(notice, regarding, Timestamp::now());
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        Api::<Event>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regarding() -> ObjectReference {
        ObjectReference {
            api_version: Some("sqsaccess.io/v1alpha1".into()),
            kind: Some("SqsAccessBinding".into()),
            name: Some("orders".into()),
            namespace: Some("shop".into()),
            uid: Some("0b6f8c4e-1d2a-4c1b-9a43-5e2b7d0c9f11".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn event_names_the_object_the_reporter_and_the_moment() {
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
            .expect("client");
        let p = Publisher::new(client, "sqs-access-operator", None);
        let notice = Notice {
            kind: Kind::Warning,
            reason: "IdentityPolicyDoesNotAllow".into(),
            note: "no statement allows sqs:SendMessage".into(),
            action: "Check".into(),
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ev = p.event(&notice, &regarding(), now);
        assert_eq!(
            ev.metadata.name.as_deref(),
            Some(format!("orders.{:x}", now.as_nanosecond()).as_str())
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.reason.as_deref(), Some("IdentityPolicyDoesNotAllow"));
        assert_eq!(ev.action.as_deref(), Some("Check"));
        assert_eq!(
            ev.reporting_instance.as_deref(),
            Some("sqs-access-operator")
        );
        assert_eq!(
            ev.regarding.as_ref().and_then(|r| r.uid.as_deref()),
            regarding().uid.as_deref()
        );
        assert!(ev.series.is_none());
        // What the API server receives: events.k8s.io/v1 with the fields it requires.
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["apiVersion"], "events.k8s.io/v1");
        assert_eq!(json["kind"], "Event");
        assert!(
            json["eventTime"]
                .as_str()
                .unwrap()
                .starts_with("2027-01-15T08:00:00")
        );
    }
}
