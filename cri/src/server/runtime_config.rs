//! RuntimeConfig.

use berth_proto::cri::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

use super::CriRuntimeService;

impl CriRuntimeService {
    /// Reports the cgroup driver, which the kubelet must match. Berth drives cgroupfs directly.
    pub(super) fn runtime_config(&self, _request: RuntimeConfigRequest) -> RuntimeConfigResponse {
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }
    }
}
