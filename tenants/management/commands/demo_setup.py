"""manage.py demo_setup: the public site and a demo tenant with one user per role. Idempotent."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django_tenants.utils import schema_context

from tenants.models import Tenant
from tenants.services import tenant_provision, tenant_public_ensure

DEMO_ROLES = ["viewer", "basic_user", "power_user", "admin", "compliance_officer"]


class Command(BaseCommand):
    help = "Create the public site, a platform superuser and the demo tenant with one user per role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default="demo")
        parser.add_argument("--password", default="demo-password", help="Password of every demo user")
        parser.add_argument("--port", type=int, default=8000, help="Port the web server listens on (for the URLs)")

    def handle(self, *args: Any, **options: Any) -> None:
        base = settings.ATRIUM_BASE_DOMAIN
        slug: str = options["slug"]
        password: str = options["password"]
        tenant_public_ensure(domain=base)
        user_model = get_user_model()
        if not user_model.objects.filter(username="platform").exists():
            user_model.objects.create_superuser("platform", "platform@localhost", password)

        if not Tenant.objects.filter(schema_name=slug.replace("-", "_")).exists():
            tenant_provision(
                slug=slug,
                name="Demo",
                processing_notice="Demo tenant: conversations are kept 30 days and may be reviewed by compliance.",
            )
        with schema_context(slug.replace("-", "_")):
            for role in DEMO_ROLES:
                user, created = user_model.objects.get_or_create(
                    username=role, defaults={"email": f"{role}@{slug}.{base}", "is_staff": role == "admin"}
                )
                if created:
                    user.set_password(password)
                    user.save()
                    user.groups.add(Group.objects.get(name=role))

        port = options["port"]
        self.stdout.write("")
        self.stdout.write("Atrium demo is ready.")
        self.stdout.write(f"  Platform admin : http://{base}:{port}/admin/   user 'platform'")
        self.stdout.write(
            f"  Demo tenant    : http://{slug}.{base}:{port}/chat/  (admin at /admin/, compliance at /compliance/)"
        )
        self.stdout.write(f"  Demo users     : {', '.join(DEMO_ROLES)}   password '{password}'")
