//! The agent page: `/agent/{extension}` shows the pages plugins open for
//! that extension (open-browser with audience extension N), pushed over
//! server-sent events. It knows nothing about any CRM: it shows URLs.
//!
//! No pop-up is lost or shown twice: the page is served with the id of the
//! newest request at that moment; its event stream first subscribes to the
//! live channel, then replays kept requests after that id (or after the
//! browser's `Last-Event-ID` on a reconnect), then streams live ones,
//! skipping ids it already sent. A listener that falls behind the channel
//! catches up from the kept requests.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use super::pages::{escape, page};
use super::state::AppState;
use crate::call_input::check_extension;
use crate::capabilities::browser::{BrowserRequest, Viewer};

const AGENT_HTML: &str = include_str!("assets/agent.html");

type St = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/agent/{extension}", get(agent_page))
        .route("/agent/{extension}/events", get(events))
}

async fn agent_page(State(st): St, Path(extension): Path<String>, headers: HeaderMap) -> Response {
    if !st.auth.allows(&headers) {
        return Redirect::to("/login").into_response();
    }
    let found = check_extension("extension", &extension)
        .ok()
        .and_then(|x| st.services.directory.get(&x).ok().flatten());
    let Some(found) = found else {
        return page(
            StatusCode::NOT_FOUND,
            format!(
                "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>No such extension</title><body><h1>No extension {}</h1><p>`pbx-host extension list` shows the PBX's extensions.</p></body></html>",
                escape(&extension)
            ),
        );
    };
    let after = st.services.browser.latest_id();
    let body = AGENT_HTML
        .replace("{{EXTENSION}}", &escape(&found.number))
        .replace("{{NAME}}", &escape(&format!("({})", found.name)))
        .replace("{{AFTER}}", &after.to_string());
    page(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
}

async fn events(
    State(st): St,
    Path(extension): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    if !st.auth.allows(&headers) {
        return (StatusCode::UNAUTHORIZED, "log in to the portal first").into_response();
    }
    // A reconnecting EventSource says where it stopped.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume.map_or(q.after, |r| r.max(q.after));
    // Subscribe before reading the kept requests: nothing falls between.
    let live = st.services.browser.subscribe();
    let backlog: VecDeque<BrowserRequest> = st.services.browser.since(after).into();
    let feed = Feed {
        viewer: Viewer::Extension(extension),
        live,
        backlog,
        last: after,
        stop: st.stopping.subscribe(),
        state: st.clone(),
    };
    Sse::new(stream(feed))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct Feed {
    viewer: Viewer,
    live: broadcast::Receiver<BrowserRequest>,
    backlog: VecDeque<BrowserRequest>,
    last: u64,
    stop: watch::Receiver<bool>,
    state: Arc<AppState>,
}

fn stream(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(request) = feed.backlog.pop_front() {
                if request.id <= feed.last || request.viewer != feed.viewer {
                    continue;
                }
                feed.last = request.id;
                let event = Event::default()
                    .event("popup")
                    .id(request.id.to_string())
                    .json_data(&request)
                    .unwrap_or_else(|_| Event::default().comment("unserializable"));
                return Some((Ok(event), feed));
            }
            if *feed.stop.borrow() {
                return None;
            }
            let Feed {
                live,
                stop,
                state,
                backlog,
                last,
                ..
            } = &mut feed;
            tokio::select! {
                _ = stop.changed() => return None,
                received = live.recv() => match received {
                    Ok(request) => backlog.push_back(request),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        backlog.extend(state.services.browser.since(*last));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
}
