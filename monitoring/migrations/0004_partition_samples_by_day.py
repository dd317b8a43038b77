"""On PostgreSQL, makes monitoring_sample a table partitioned by day of `ts` (epoch ms), so
retention drops whole days; SQLite keeps the plain table. Existing samples are moved over.
Partition names and bounds follow monitoring.storage.partition_name()."""

from datetime import UTC, date, datetime, timedelta

import django.db.models.deletion
from django.db import migrations, models

DAY_MS = 86_400_000
DAYS_AHEAD = 7


def _partition_name(day: int) -> str:
    return f"monitoring_sample_p{(date(1970, 1, 1) + timedelta(days=day)):%Y%m%d}"


def partition_samples(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    today = (datetime.now(UTC).date() - date(1970, 1, 1)).days
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_sample RENAME TO monitoring_sample_plain")
        cursor.execute(
            "ALTER TABLE monitoring_sample_plain RENAME CONSTRAINT monitoring_sample_pkey TO sample_plain_pkey"
        )
        cursor.execute("ALTER INDEX sample_ts_idx RENAME TO sample_plain_ts_idx")
        cursor.execute(
            """
            CREATE TABLE monitoring_sample (
                series_id bigint NOT NULL,
                ts bigint NOT NULL,
                value double precision NULL,
                CONSTRAINT monitoring_sample_pkey PRIMARY KEY (series_id, ts)
            ) PARTITION BY RANGE (ts)
            """
        )
        cursor.execute("CREATE INDEX sample_ts_idx ON monitoring_sample (ts)")
        cursor.execute("SELECT DISTINCT ts / %s FROM monitoring_sample_plain", [DAY_MS])
        days = {row[0] for row in cursor.fetchall()} | set(range(today - 1, today + DAYS_AHEAD + 1))
        for day in sorted(days):
            cursor.execute(
                f"CREATE TABLE {_partition_name(day)} PARTITION OF monitoring_sample "
                f"FOR VALUES FROM ({day * DAY_MS}) TO ({(day + 1) * DAY_MS})"
            )
        cursor.execute(
            "INSERT INTO monitoring_sample (series_id, ts, value) SELECT series_id, ts, value FROM monitoring_sample_plain"
        )
        cursor.execute("DROP TABLE monitoring_sample_plain")


def unpartition_samples(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_sample RENAME TO monitoring_sample_partitioned")
        cursor.execute(
            "ALTER TABLE monitoring_sample_partitioned RENAME CONSTRAINT monitoring_sample_pkey TO sample_partitioned_pkey"
        )
        cursor.execute("ALTER INDEX sample_ts_idx RENAME TO sample_partitioned_ts_idx")
        cursor.execute(
            """
            CREATE TABLE monitoring_sample (
                series_id bigint NOT NULL,
                ts bigint NOT NULL,
                value double precision NULL,
                CONSTRAINT monitoring_sample_pkey PRIMARY KEY (series_id, ts)
            )
            """
        )
        cursor.execute("CREATE INDEX sample_ts_idx ON monitoring_sample (ts)")
        cursor.execute(
            "INSERT INTO monitoring_sample (series_id, ts, value) SELECT series_id, ts, value FROM monitoring_sample_partitioned"
        )
        cursor.execute("DROP TABLE monitoring_sample_partitioned")


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_sample_value_nan_as_null"),
    ]

    operations = [
        migrations.AlterField(
            model_name="sample",
            name="series",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                to="monitoring.series",
            ),
        ),
        migrations.RunPython(partition_samples, unpartition_samples, elidable=False),
    ]
