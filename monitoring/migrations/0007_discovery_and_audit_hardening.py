"""Discovery's DiscoveredTarget; the audit log made append-only: a PostgreSQL trigger refuses
UPDATE and DELETE on it, and the actor's foreign key no longer sets NULL on a user's deletion
(which the trigger would refuse); new audit actions; role groups re-synced so they hold the
new model's permissions."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

AUDIT_TABLE = "monitoring_auditlogentry"
APPEND_ONLY_SQL = f"""
CREATE OR REPLACE FUNCTION monitoring_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % of entry % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER monitoring_audit_log_append_only
    BEFORE UPDATE OR DELETE ON {AUDIT_TABLE}
    FOR EACH ROW EXECUTE FUNCTION monitoring_audit_log_append_only();
"""
DROP_APPEND_ONLY_SQL = f"""
DROP TRIGGER IF EXISTS monitoring_audit_log_append_only ON {AUDIT_TABLE};
DROP FUNCTION IF EXISTS monitoring_audit_log_append_only();
"""


def make_audit_log_append_only(apps, schema_editor):
    # SQLite has no such trigger here: its test runs flush tables with DELETE, and the
    # model refuses updates and deletes in the ORM on both databases.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY_SQL, params=None)  # the % are plpgsql's, not placeholders


def allow_audit_log_changes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_ONLY_SQL, params=None)


def sync_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from monitoring.roles import sync_role_groups

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_role_groups(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0006_sample_default_partition"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditlogentry",
            name="action",
            field=models.CharField(
                choices=[
                    ("create", "Create"),
                    ("update", "Update"),
                    ("delete", "Delete"),
                    ("acknowledge", "Acknowledge"),
                    ("resolve", "Resolve"),
                    ("silence", "Silence"),
                    ("enable", "Enable"),
                    ("disable", "Disable"),
                    ("run", "Run"),
                    ("test", "Test"),
                    ("import", "Import"),
                    ("login", "Login"),
                    ("login_failed", "Failed login"),
                    ("logout", "Logout"),
                    ("revoke", "Revoke"),
                    ("approve", "Approve"),
                    ("reject", "Reject"),
                    ("rotate", "Rotate key"),
                ],
                db_index=True,
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="auditlogentry",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.CreateModel(
            name="DiscoveredTarget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("device", "Device registration"),
                            ("network", "Network scan"),
                            ("file_sd", "file_sd file"),
                            ("http_sd", "http_sd endpoint"),
                        ],
                        db_index=True,
                        max_length=20,
                    ),
                ),
                ("identity", models.CharField(max_length=300, unique=True)),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "Awaiting approval"), ("approved", "Approved"), ("rejected", "Rejected")],
                        db_index=True,
                        default="pending",
                        max_length=20,
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("service", "Service"),
                            ("database", "Database"),
                            ("device", "Device"),
                            ("host", "Host"),
                            ("prometheus", "Prometheus exporter"),
                        ],
                        max_length=20,
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                ("endpoint", models.CharField(blank=True, default="", max_length=500)),
                ("labels", models.JSONField(blank=True, default=dict)),
                (
                    "parent_ref",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="Device id of the gateway this device reports through.",
                        max_length=200,
                    ),
                ),
                (
                    "details",
                    models.JSONField(
                        blank=True, default=dict, help_text="What discovery saw (protocol, where listed)."
                    ),
                ),
                ("first_seen_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_seen_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                (
                    "missing_since",
                    models.DateTimeField(
                        blank=True, help_text="No longer listed by its file_sd/http_sd source since then.", null=True
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("decided_by", models.CharField(blank=True, default="", max_length=150)),
                (
                    "target",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="discovery",
                        to="monitoring.monitoringtarget",
                    ),
                ),
            ],
            options={
                "ordering": ["-first_seen_at", "-id"],
                "indexes": [models.Index(fields=["state", "source"], name="monitoring__state_f51eed_idx")],
            },
        ),
        migrations.RunPython(make_audit_log_append_only, allow_audit_log_changes),
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
