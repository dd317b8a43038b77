"""Makes the per-batch update of each series' last value cheap and sample inserts lighter:
no index covers last_ts (so PostgreSQL updates the row in place, HOT), the series table
leaves half of each page free for those updates, and on PostgreSQL the sample table's
index on ts is a BRIN index (samples arrive in time order; a B-tree on ts would cost
every insert a second B-tree insertion for the rare query by time alone)."""

from django.db import migrations


def tune_postgres(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_series SET (fillfactor = 50)")
        cursor.execute("DROP INDEX sample_ts_idx")
        cursor.execute("CREATE INDEX sample_ts_idx ON monitoring_sample USING brin (ts)")


def untune_postgres(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitoring_series RESET (fillfactor)")
        cursor.execute("DROP INDEX sample_ts_idx")
        cursor.execute("CREATE INDEX sample_ts_idx ON monitoring_sample (ts)")


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_partition_samples_by_day"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="series",
            name="monitoring__name_476759_idx",
        ),
        migrations.RunPython(tune_postgres, untune_postgres, elidable=False),
    ]
