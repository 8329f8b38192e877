# Sourced by the scripts that run tests (scripts/with-moto.sh, .ci/run, e2e/run.sh): nothing they
# start may send AWS traffic off loopback. The AWS SDK's default chain otherwise asks the instance
# metadata service (169.254.169.254) for a region or credentials when the environment has none,
# and a developer's profile, SSO or container credentials could reach real AWS. Test values
# instead; the tests give the emulator's endpoint explicitly.
export AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL \
  AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE \
  AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
