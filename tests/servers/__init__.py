"""Real servers on 127.0.0.1 for tests: SeaweedFS (S3), OpenSSH (SFTP), aiosmtpd (SMTP), and a
TCP fault proxy. Use the fixtures by importing them into a conftest::

    from tests.servers.fixtures import fault_proxy, s3_bucket, seaweedfs, smtp_server, sshd

When ``HEARTH_TEST_REQUIRE_SERVERS=1`` (CI sets it) a missing binary FAILS the test with the
package to install; otherwise it skips.
"""
