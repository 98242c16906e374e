from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('services_app', '0003_self_provision_grants'),
    ]

    operations = [
        migrations.AddField(
            model_name='instanceinfra',
            name='runtime_kind',
            field=models.CharField(blank=True, default='', max_length=32),
        ),
        migrations.AddField(
            model_name='instanceinfra',
            name='runtime_model',
            field=models.CharField(blank=True, default='', max_length=200),
        ),
    ]
