"""On PostgreSQL, gives the sample table a DEFAULT partition, so a row for a day whose
partition does not exist yet (a direct ORM write, a backfill before the partitions task ran)
is stored instead of failing. monitoring.storage moves such rows into the day's partition
when it creates it."""

from django.db import migrations


def add_default_partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("CREATE TABLE monitoring_sample_default PARTITION OF monitoring_sample DEFAULT")


def drop_default_partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP TABLE monitoring_sample_default")


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0005_series_hot_updates_and_brin_sample_ts"),
    ]

    operations = [
        migrations.RunPython(add_default_partition, drop_default_partition, elidable=False),
    ]
