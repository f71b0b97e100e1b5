//! The rule model of mep (traffic rules, DNS rules), immutable rule snapshots and the `DataPlane`
//! trait that receives every rule change. Filled by the application-support issue; the control
//! plane's service registry does not depend on it yet.
