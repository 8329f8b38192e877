//! Tests against a real Kubernetes API server (etcd + kube-apiserver, the envtest binaries):
//! what only a real server proves. The CRD installs and reads well in kubectl; the controller
//! writes status by server-side apply, once, with Events; the webhook is called by the API
//! server over TLS; the chart's RBAC is enough; watches survive an API server restart; leader
//! election hands over. Skipped, with one line saying how to enable them, without the binaries
//! (see `support::envtest`).

#[path = "../support/mod.rs"]
mod support;

mod controller;
mod crd;
mod events;
mod operator;
mod webhook;
