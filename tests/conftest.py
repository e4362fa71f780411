"""Settings every test shares."""

from hypothesis import HealthCheck, settings

# CI and dev machines are small and busy: a generated example that takes long to build says
# nothing about the code under test, so the timing health checks are off; deadlines too
settings.register_profile("gpuhive", suppress_health_check=[HealthCheck.too_slow,
                                                            HealthCheck.data_too_large],
                          deadline=None)
settings.load_profile("gpuhive")
