//! Certificates: SQL Server's public keys trusted for the link (hybridCertificate, serverTrustCertificates) and
//! this managed instance's own endpoint certificate (endpointCertificates).

use crate::arm_error;
use crate::routes::{ok, sql_err, str_prop, Handler};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

impl Handler {
    fn trust(&self) -> Result<&trust::TrustStore, Response> {
        self.api.server.trust().map_err(sql_err)
    }

    /// POST hybridCertificate: SQL Server's certificate public key, trusted for the link.
    pub(crate) fn hybrid_certificate(&self, body: &Value) -> Response {
        let Some(blob) = str_prop(body, "publicblob") else {
            return arm_error(StatusCode::BAD_REQUEST, "MissingPublicBlob", "properties.PublicBlob is required: the 0x… public key of the SQL Server certificate.", Some("properties.PublicBlob"));
        };
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let bytes = match trust::parse_binary_literal(blob) {
            Ok(b) => b,
            Err(e) => return sql_err(sqlexec::trustsql::err(e)),
        };
        let info = match trust::parse_cert(&bytes) {
            Ok(i) => i,
            Err(e) => return sql_err(sqlexec::trustsql::err(e)),
        };
        let name = format!("hybrid:{}", info.thumbprint_hex());
        let m = self.api.server.inst.master();
        if t.cert_id(&m, &name).ok().flatten().is_none() {
            if let Err(e) = t.import_public(&m, &name, &bytes) {
                return sql_err(sqlexec::trustsql::err(e));
            }
        }
        ok(
            json!({"properties": {"publicBlob": blob, "uploadTime": chrono::Utc::now().to_rfc3339()}}),
        )
    }

    fn trust_cert_json(&self, name: &str, der: &[u8]) -> Value {
        let thumb = trust::parse_cert(der)
            .map(|i| i.thumbprint_hex())
            .unwrap_or_default();
        json!({
            "id": format!("{}/serverTrustCertificates/{name}", self.api.mi_id()),
            "name": name,
            "type": "Microsoft.Sql/managedInstances/serverTrustCertificates",
            "properties": {"publicBlob": trust::to_binary_literal(der), "thumbprint": thumb, "certificateName": name}
        })
    }

    pub(crate) fn list_trust_certs(&self) -> Response {
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let m = self.api.server.inst.master();
        let rows = t.certificates(&m).unwrap_or_default();
        let mut v = Vec::new();
        for c in rows
            .iter()
            .filter(|c| c.pvt_key_encryption_type == "NA" && !c.name.starts_with("hybrid:"))
        {
            if let Ok(Some(der)) = t.cert_encoded(&m, c.certificate_id) {
                v.push(self.trust_cert_json(&c.name, &der));
            }
        }
        ok(json!({"value": v}))
    }

    pub(crate) fn get_trust_cert(&self, name: &str) -> Response {
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let m = self.api.server.inst.master();
        match t
            .cert_id(&m, name)
            .ok()
            .flatten()
            .and_then(|id| t.cert_encoded(&m, id).ok().flatten())
        {
            Some(der) => ok(self.trust_cert_json(name, &der)),
            None => arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("The server trust certificate '{name}' was not found."),
                None,
            ),
        }
    }

    pub(crate) fn put_trust_cert(&self, name: &str, body: &Value) -> Response {
        let Some(blob) = str_prop(body, "publicblob") else {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "MissingPublicBlob",
                "properties.publicBlob is required: the 0x… public key of the certificate.",
                Some("properties.publicBlob"),
            );
        };
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        let m = self.api.server.inst.master();
        // PUT is idempotent: the same certificate again is a no-op, a different one under the name is refused.
        let existing = t
            .cert_id(&m, name)
            .ok()
            .flatten()
            .and_then(|id| t.cert_encoded(&m, id).ok().flatten());
        let same = existing.is_some() && trust::parse_binary_literal(blob).ok() == existing;
        if !same {
            if let Err(e) = t.import_public_hex(&m, name, blob) {
                return sql_err(sqlexec::trustsql::err(e));
            }
        }
        drop(m);
        self.get_trust_cert(name)
    }

    pub(crate) fn delete_trust_cert(&self, name: &str) -> Response {
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        match t.drop_certificate(&self.api.server.inst.master(), name) {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => sql_err(sqlexec::trustsql::err(e)),
        }
    }

    pub(crate) fn endpoint_certs(&self, kind: Option<&str>) -> Response {
        if kind.is_some_and(|k| !k.eq_ignore_ascii_case("DATABASE_MIRRORING")) {
            return arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "Only the DATABASE_MIRRORING endpoint certificate exists.",
                None,
            );
        }
        let t = match self.trust() {
            Ok(t) => t,
            Err(r) => return r,
        };
        match t
            .endpoint_certificate_public_key(&self.api.server.inst.master(), &self.api.server.host)
        {
            Ok(der) => {
                let one = json!({
                    "id": format!("{}/endpointCertificates/DATABASE_MIRRORING", self.api.mi_id()),
                    "name": "DATABASE_MIRRORING",
                    "type": "Microsoft.Sql/managedInstances/endpointCertificates",
                    "properties": {"publicBlob": trust::to_binary_literal(&der)}
                });
                ok(if kind.is_some() {
                    one
                } else {
                    json!({"value": [one]})
                })
            }
            Err(e) => sql_err(sqlexec::trustsql::err(e)),
        }
    }
}
