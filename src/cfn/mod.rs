//! CloudFormation templates for mapreg's resources, without a server: reading a template
//! ([`template`]), the supported resource types ([`resources`]), and checking, ordering,
//! resolving and diffing ([`plan`]). `mapreg deploy` (`crate::cli::deploy`) runs the result
//! against a registry.
//!
//! Supported: `AWS::ApiGatewayV2::Api`, `::Stage`, `::DomainName` and `::ApiMapping`;
//! `Parameters` (String, Number) with defaults; `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`
//! (YAML short tags or the long forms); `DependsOn`; `Outputs`. Anything else is refused with
//! its location before anything is written.

pub mod plan;
pub mod resources;
pub mod template;

/// A template that cannot be deployed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Template error at {location}: {message}")]
pub struct TemplateError {
    /// Where in the template (`Resources.MyApi.Properties.Name`), or the flag at fault.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl TemplateError {
    /// An error at `location`.
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        TemplateError {
            location: location.into(),
            message: message.into(),
        }
    }
}
