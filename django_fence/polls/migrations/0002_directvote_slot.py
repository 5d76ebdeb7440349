"""DirectVote.slot (the queue slot a database vote had taken), and voters stored as sha256 digests."""

import hashlib
import re
from typing import Any

from django.db import migrations, models

HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def hash_raw_voters(apps: Any, schema_editor: Any) -> None:
    """Earlier rows held the raw (truncated) session key or cookie value: keep only its digest."""
    direct_vote = apps.get_model("polls", "DirectVote")
    for row in direct_vote.objects.all().only("pk", "voter"):
        if not HEX_DIGEST.fullmatch(row.voter):
            row.voter = hashlib.sha256(row.voter.encode()).hexdigest()
            row.save(update_fields=["voter"])


class Migration(migrations.Migration):
    dependencies = [
        ("polls", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="directvote",
            name="slot",
            field=models.BigIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.RunPython(hash_raw_voters, migrations.RunPython.noop),
    ]
