//! RuntimeConfig.

use berth_proto::cri::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

use super::CriRuntimeService;
use crate::cgroups::DriverKind;

impl CriRuntimeService {
    /// Reports the cgroup driver, which the kubelet adopts when it asks the runtime for it, and
    /// must otherwise match.
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
