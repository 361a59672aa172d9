"""
Asana's documented audit log vocabulary: event types with their categories, and actor types.

:data:`EVENT_TYPES` holds every ``event_type`` Asana documents on its "Audit log events" page, each
with the ``event_category`` the API sends (the page's heading in lowercase snake case: "Admin
settings" is ``admin_settings``), the ``resource_type`` its events operate on (as the page states
it, or the closest documented resource where the page does not say) and a relative frequency for
generation. Asana keeps adding types, so a client must never validate against a closed list; this
one is for generating realistic events only.

Only the standard library is used.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACTOR_TYPES",
    "EVENT_CATEGORIES",
    "EVENT_TYPES",
    "EventType",
]

#: The actor types Asana documents, in the order of its OpenAPI spec.
ACTOR_TYPES: tuple[str, ...] = ("user", "asana", "asana_support", "anonymous", "external_administrator")


@dataclass(frozen=True)
class EventType:
    """
    One kind of audit event.

    :param name: the ``event_type``.
    :param category: the ``event_category``.
    :param resource_type: the ``resource.resource_type`` of such events.
    :param weight: relative frequency in generated events.
    :param change: ``(old, new)`` value choices put into ``details`` for ``*_changed`` events.
    """

    name: str
    category: str
    resource_type: str
    weight: float = 1.0
    change: tuple[tuple[str, ...], tuple[str, ...]] | None = None


_PRIVACY = ("private", "public_to_workspace", "members_only")
_ADMIN_ROLES = ("member", "admin", "super_admin")
_DIVISION_ROLES = ("member", "division_admin")
_REQUIRED = ("optional", "required")
_EMAILS = ("security@example.com", "secops@example.com", "it-alerts@example.com")
_SAML_URLS = ("https://idp.example.com/saml/sso", "https://example.okta.com/app/asana/sso/saml")
_PASSWORDS = ("simple", "strong")
_GUEST_INVITES = ("anyone", "admins_only", "nobody")
_ATTACHMENTS = ("all", "asana_only", "none")
_SESSION = ("30 days", "7 days", "24 hours", "12 hours")
_APP_APPROVAL = ("approved", "not_approved", "pending")
_APP_TYPES = ("all_apps", "third_party_apps", "none")
_SERVICE_ACCOUNTS = ("SIEM export", "Backup Bot", "Audit 🔍 collector")

#: Every event type Asana documents, with its category, resource type and generation weight. The
#: weights make logins (about 45% of all events) and everyday content work common, and the many
#: admin settings changes rare, as in a real organisation's audit log.
EVENT_TYPES: tuple[EventType, ...] = (
    # Logins: all operate on the user.
    EventType("user_login_succeeded", "logins", "user", 30),
    EventType("user_login_failed", "logins", "user", 6),
    EventType("user_logged_out", "logins", "user", 10),
    # User updates: all operate on the user.
    EventType("user_invited", "user_updates", "user", 1.2),
    EventType("user_deprovisioned", "user_updates", "user", 0.4),
    EventType("user_reprovisioned", "user_updates", "user", 0.1),
    EventType("user_forgot_password_started", "user_updates", "user", 0.8),
    EventType("user_password_reset", "user_updates", "user", 0.5),
    EventType("user_password_changed", "user_updates", "user", 0.4),
    EventType("user_two_factor_auth_enabled", "user_updates", "user", 0.3),
    EventType("user_two_factor_auth_disabled", "user_updates", "user", 0.05),
    EventType("user_csv_import_started", "user_updates", "user", 0.02),
    EventType("domain_user_billing_paused", "user_updates", "user", 0.05),
    EventType("domain_user_billing_unpaused", "user_updates", "user", 0.03),
    # Admin settings: all operate on the workspace except the announcements.
    EventType(
        "workspace_security_contact_email_changed", "admin_settings", "workspace", 0.02, (_EMAILS, _EMAILS)
    ),
    EventType(
        "workspace_google_sso_settings_changed", "admin_settings", "workspace", 0.02, (_REQUIRED, _REQUIRED)
    ),
    EventType("workspace_saml_settings_changed", "admin_settings", "workspace", 0.03, (_REQUIRED, _REQUIRED)),
    EventType("workspace_saml_url_changed", "admin_settings", "workspace", 0.02, (_SAML_URLS, _SAML_URLS)),
    EventType(
        "workspace_password_requirements_changed",
        "admin_settings",
        "workspace",
        0.02,
        (_PASSWORDS, _PASSWORDS),
    ),
    EventType("workspace_force_password_reset", "admin_settings", "workspace", 0.01),
    EventType(
        "workspace_guest_invite_permissions_changed",
        "admin_settings",
        "workspace",
        0.02,
        (_GUEST_INVITES, _GUEST_INVITES),
    ),
    EventType(
        "workspace_file_attachment_options_changed",
        "admin_settings",
        "workspace",
        0.02,
        (_ATTACHMENTS, _ATTACHMENTS),
    ),
    EventType(
        "workspace_default_team_privacy_settings_changed",
        "admin_settings",
        "workspace",
        0.02,
        (_PRIVACY, _PRIVACY),
    ),
    EventType("workspace_wide_reporting_enabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_wide_reporting_disabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_associated_email_domain_added", "admin_settings", "workspace", 0.02),
    EventType("workspace_associated_email_domain_removed", "admin_settings", "workspace", 0.01),
    EventType("workspace_require_two_factor_auth_enabled", "admin_settings", "workspace", 0.02),
    EventType("workspace_require_two_factor_auth_disabled", "admin_settings", "workspace", 0.01),
    EventType(
        "workspace_app_recipient_emails_changed", "admin_settings", "workspace", 0.01, (_EMAILS, _EMAILS)
    ),
    EventType("workspace_view_links_enabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_view_links_disabled", "admin_settings", "workspace", 0.01),
    EventType(
        "workspace_default_session_duration_changed",
        "admin_settings",
        "workspace",
        0.02,
        (_SESSION, _SESSION),
    ),
    EventType("workspace_announcement_created", "admin_settings", "workspace_announcement", 0.05),
    EventType("workspace_announcement_removed", "admin_settings", "workspace_announcement", 0.03),
    EventType("workspace_form_link_authentication_required_enabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_form_link_authentication_required_disabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_personal_access_token_enabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_personal_access_token_disabled", "admin_settings", "workspace", 0.01),
    EventType(
        "workspace_app_admin_approval_setting_changed",
        "admin_settings",
        "workspace",
        0.04,
        (_APP_APPROVAL, _APP_APPROVAL),
    ),
    EventType(
        "workspace_require_app_approvals_of_type_changed",
        "admin_settings",
        "workspace",
        0.01,
        (_APP_TYPES, _APP_TYPES),
    ),
    EventType("workspace_form_is_embeddable_forms_enabled", "admin_settings", "workspace", 0.01),
    EventType("workspace_form_is_embeddable_forms_disabled", "admin_settings", "workspace", 0.01),
    EventType(
        "workspace_logged_out_view_authentication_required_enabled", "admin_settings", "workspace", 0.01
    ),
    EventType(
        "workspace_logged_out_view_authentication_required_disabled", "admin_settings", "workspace", 0.01
    ),
    EventType("workspace_baa_signed", "admin_settings", "workspace", 0.005),
    # Roles: all operate on the user.
    EventType("user_workspace_admin_role_changed", "roles", "user", 0.05, (_ADMIN_ROLES, _ADMIN_ROLES)),
    EventType("user_division_admin_role_changed", "roles", "user", 0.05, (_DIVISION_ROLES, _DIVISION_ROLES)),
    # Content export.
    EventType("workspace_export_started", "content_export", "workspace", 0.05),
    EventType("search_report_export_started", "content_export", "search", 0.6),
    EventType("workspace_teams_export_started", "content_export", "workspace", 0.03),
    EventType("division_teams_export_started", "content_export", "division", 0.02),
    EventType("workspace_members_export_started", "content_export", "workspace", 0.05),
    EventType("project_csv_export_started", "content_export", "project", 1),
    EventType("attachment_downloaded", "content_export", "attachment", 9),
    EventType("workspace_attachment_export_started", "content_export", "workspace", 0.02),
    EventType("object_export_started", "content_export", "project", 0.3),
    # Access control.
    EventType("project_share_link_enabled", "access_control", "project", 0.3),
    EventType("project_share_link_disabled", "access_control", "project", 0.1),
    EventType("project_view_link_enabled", "access_control", "project", 0.3),
    EventType("project_view_link_disabled", "access_control", "project", 0.1),
    EventType("team_privacy_settings_changed", "access_control", "team", 0.2, (_PRIVACY, _PRIVACY)),
    EventType("team_member_added", "access_control", "team", 3),
    EventType("team_member_removed", "access_control", "team", 1.2),
    EventType("project_member_added", "access_control", "project", 3.5),
    EventType("project_member_removed", "access_control", "project", 1.2),
    EventType("project_privacy_settings_changed", "access_control", "project", 0.6, (_PRIVACY, _PRIVACY)),
    EventType("portfolio_member_added", "access_control", "portfolio", 0.6),
    EventType("portfolio_member_removed", "access_control", "portfolio", 0.2),
    # Apps.
    EventType("team_harvest_integration_enabled", "apps", "team", 0.02),
    EventType("team_harvest_integration_disabled", "apps", "team", 0.01),
    EventType("user_app_authorized", "apps", "user", 0.8),
    EventType("user_app_revoked", "apps", "user", 0.3),
    EventType("user_personal_access_token_authorized", "apps", "user", 0.4),
    EventType("user_personal_access_token_revoked", "apps", "user", 0.2),
    EventType("service_account_created", "apps", "user", 0.02),
    EventType("service_account_deleted", "apps", "user", 0.01),
    EventType("service_account_name_changed", "apps", "user", 0.01, (_SERVICE_ACCOUNTS, _SERVICE_ACCOUNTS)),
    # Creation.
    EventType("team_created", "creation", "team", 0.3),
    EventType("attachment_uploaded", "creation", "attachment", 6),
    # Deletion.
    EventType("task_deleted", "deletion", "task", 7),
    EventType("task_permanently_deleted", "deletion", "task", 0.4),
    EventType("task_undeleted", "deletion", "task", 0.8),
    EventType("project_deleted", "deletion", "project", 0.8),
    EventType("project_undeleted", "deletion", "project", 0.1),
    EventType("portfolio_deleted", "deletion", "portfolio", 0.2),
    EventType("portfolio_undeleted", "deletion", "portfolio", 0.03),
    EventType("goal_deleted", "deletion", "goal", 0.2),
    EventType("goal_undeleted", "deletion", "goal", 0.03),
    EventType("custom_field_deleted", "deletion", "custom_field", 0.2),
    EventType("custom_field_undeleted", "deletion", "custom_field", 0.03),
    EventType("message_deleted", "deletion", "message", 0.3),
    EventType("message_permanently_deleted", "deletion", "message", 0.02),
    EventType("message_undeleted", "deletion", "message", 0.03),
    EventType("team_deleted", "deletion", "team", 0.1),
    EventType("team_undeleted", "deletion", "team", 0.02),
    EventType("attachment_deleted", "deletion", "attachment", 1.5),
    EventType("attachment_undeleted", "deletion", "attachment", 0.1),
    EventType("comment_deleted", "deletion", "story", 1.5),
    EventType("comment_undeleted", "deletion", "story", 0.1),
    EventType("status_update_deleted", "deletion", "status_update", 0.2),
    EventType("status_update_permanently_deleted", "deletion", "status_update", 0.02),
    EventType("status_update_undeleted", "deletion", "status_update", 0.02),
    EventType("task_template_deleted", "deletion", "task_template", 0.05),
    EventType("task_template_undeleted", "deletion", "task_template", 0.01),
    EventType("project_template_deleted", "deletion", "project_template", 0.05),
    EventType("project_template_undeleted", "deletion", "project_template", 0.01),
    EventType("story_deleted", "deletion", "story", 0.3),
    EventType("story_undeleted", "deletion", "story", 0.03),
)

#: The documented ``event_category`` values, in the order of Asana's page.
EVENT_CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.category for t in EVENT_TYPES))
