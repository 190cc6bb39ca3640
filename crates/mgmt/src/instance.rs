//! The managedInstances resource: this instance, as `Get-AzSqlInstance` / `az sql mi show` read it.

use crate::routes::{ok, Handler};
use axum::response::Response;
use serde_json::{json, Value};

impl Handler {
    fn instance_json(&self) -> Value {
        json!({
            "id": self.api.mi_id(),
            "name": self.api.server.name,
            "type": "Microsoft.Sql/managedInstances",
            "location": self.api.location,
            "properties": {
                "fullyQualifiedDomainName": self.api.server.host,
                "state": "Ready",
                "provisioningState": "Succeeded",
                "collation": "SQL_Latin1_General_CP1_CI_AS",
                "resourceGroupName": self.api.resource_group,
            }
        })
    }

    pub(crate) fn instance(&self) -> Response {
        ok(self.instance_json())
    }

    /// The subscription's (or resource group's) instances: this one, when the scope is ours.
    pub(crate) fn list_instances(&self, in_scope: bool) -> Response {
        let v: Vec<Value> = if in_scope {
            vec![self.instance_json()]
        } else {
            vec![]
        };
        ok(json!({ "value": v }))
    }
}
