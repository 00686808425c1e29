"""Orders get a random public id (their page's address) and the run of their checkout.

The public id is added in three moves: nullable, filled in row by row, then unique. A
default on a new column is computed once for the whole table, so the orders already
there (the demo's) would all get the same id and break uniqueness.
"""

from django.db import migrations, models

import example_project.shop.models


def fill_public_ids(apps, schema_editor):
    Order = apps.get_model("shop", "Order")
    for order in Order.objects.using(schema_editor.connection.alias).filter(public_id=None):
        order.public_id = example_project.shop.models.new_public_id()
        order.save(update_fields=["public_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="public_id",
            field=models.CharField(editable=False, max_length=32, null=True),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="order",
            name="public_id",
            field=models.CharField(
                default=example_project.shop.models.new_public_id,
                editable=False,
                max_length=32,
                unique=True,
            ),
        ),
        migrations.AddField(
            model_name="order",
            name="run_id",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="order",
            name="status",
            field=models.CharField(
                choices=[
                    ("new", "New"),
                    ("reserved", "Reserved"),
                    ("shipped", "Shipped"),
                    ("cancelled", "Cancelled"),
                ],
                default="new",
                max_length=16,
            ),
        ),
    ]
