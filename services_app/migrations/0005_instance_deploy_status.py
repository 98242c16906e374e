from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('services_app', '0004_instance_runtime_kind'),
    ]

    operations = [
        migrations.AddField(
            model_name='instanceinfra',
            name='deploy_status',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.AddField(
            model_name='instanceinfra',
            name='deploy_checked_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
