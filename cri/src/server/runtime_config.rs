//! RuntimeConfig.

use berth_proto::cri::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

use super::CriRuntimeService;
use crate::cgroups::DriverKind;

impl CriRuntimeService {
    /// Reports the cgroup driver. A kubelet that requests it adopts it, and any other kubelet
    /// must be configured to match.
    pub(super) fn runtime_config(&self, _request: RuntimeConfigRequest) -> RuntimeConfigResponse {
        let driver = match self.0.runtime.cgroup_driver() {
            DriverKind::Cgroupfs => CgroupDriver::Cgroupfs,
            DriverKind::Systemd => CgroupDriver::Systemd,
        };
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }
    }
}
