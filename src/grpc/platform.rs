//! `identity.v1.Platform`: proto in, use case, proto out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{caller, context, timestamp, timestamp_ms};
use crate::{
    app::{
        App,
        platform::{self, WindowInput},
    },
    config::PlatformEntry,
    domain::platform::ComponentState,
    pb::{self, platform_server::Platform},
    store::entities::maintenance_window,
};

pub struct PlatformService {
    app: Arc<App>,
}

impl PlatformService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn platform_info(entry: &PlatformEntry, current: bool) -> pb::PlatformInfo {
    pb::PlatformInfo {
        id: entry.id.clone(),
        code: entry.code.clone(),
        login_url: entry.login_url.clone(),
        api_url: entry.api_url.clone(),
        current,
    }
}

pub fn state_to_proto(state: ComponentState) -> pb::ComponentState {
    match state {
        ComponentState::Operational => pb::ComponentState::Operational,
        ComponentState::Degraded => pb::ComponentState::Degraded,
        ComponentState::Outage => pb::ComponentState::Outage,
        ComponentState::Maintenance => pb::ComponentState::Maintenance,
    }
}

fn window_to_proto(window: &maintenance_window::Model) -> pb::MaintenanceWindow {
    pb::MaintenanceWindow {
        id: window.id.clone(),
        title: window.title.clone(),
        start_time: timestamp(window.starts_at),
        end_time: timestamp(window.ends_at),
        components: platform::components_of(window),
        create_time: timestamp(window.created_at),
    }
}

#[tonic::async_trait]
impl Platform for PlatformService {
    async fn locate_platform(
        &self,
        request: Request<pb::LocatePlatformRequest>,
    ) -> Result<Response<pb::LocatePlatformResponse>, Status> {
        let located = platform::locate(&self.app, &request.into_inner().user_login)?;
        Ok(Response::new(pb::LocatePlatformResponse {
            platform: Some(platform_info(&located.platform, located.current)),
        }))
    }

    async fn list_platforms(
        &self,
        _request: Request<pb::ListPlatformsRequest>,
    ) -> Result<Response<pb::ListPlatformsResponse>, Status> {
        let config = &self.app.config.platform;
        let platforms = config.platforms.iter().map(|entry| platform_info(entry, entry.id == config.current)).collect();
        Ok(Response::new(pb::ListPlatformsResponse { platforms }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let snapshot = platform::status(&self.app).await;
        let current = self.app.config.platform.current_entry();
        Ok(Response::new(pb::GetStatusResponse {
            platform: Some(platform_info(current, true)),
            overall: state_to_proto(snapshot.overall).into(),
            components: snapshot
                .components
                .iter()
                .map(|c| pb::ComponentStatus {
                    name: c.name.to_owned(),
                    state: state_to_proto(c.state).into(),
                    detail: c.detail.clone(),
                })
                .collect(),
            maintenance_windows: snapshot.windows.iter().map(window_to_proto).collect(),
            checked_at: timestamp(snapshot.checked_at_ms),
        }))
    }

    async fn schedule_maintenance(
        &self,
        request: Request<pb::ScheduleMaintenanceRequest>,
    ) -> Result<Response<pb::ScheduleMaintenanceResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let input = WindowInput {
            title: body.title,
            starts_at_ms: timestamp_ms(body.start_time),
            ends_at_ms: timestamp_ms(body.end_time),
            components: body.components,
        };
        let window = platform::schedule(&self.app, &caller, input, &ctx).await?;
        Ok(Response::new(pb::ScheduleMaintenanceResponse { window: Some(window_to_proto(&window)) }))
    }

    async fn cancel_maintenance(
        &self,
        request: Request<pb::CancelMaintenanceRequest>,
    ) -> Result<Response<pb::CancelMaintenanceResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        platform::cancel(&self.app, &caller, &request.into_inner().id, &ctx).await?;
        Ok(Response::new(pb::CancelMaintenanceResponse {}))
    }
}
