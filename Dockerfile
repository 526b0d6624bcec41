# pgswitch image: built on Debian 12 from the same packages as scripts/install_deps.sh,
# run on debian:bookworm-slim. Used by docker-compose.yml; on its own:
#   docker build -t pgswitch .
#   docker run -p 6432:6432 -p 6480:6480 -v $PWD/my.toml:/etc/pgswitch/pgswitch.toml:ro pgswitch

# ---- build stage
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        g++ meson ninja-build pkg-config cmake \
        libboost1.81-dev libpq-dev libpg-query-dev nlohmann-json3-dev libtomlplusplus-dev \
        doctest-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup build --buildtype=release \
 && meson compile -C build proxy/pgswitch \
 && build/proxy/pgswitch --version

# ---- runtime stage
FROM debian:bookworm-slim
# runtime libraries of build/proxy/pgswitch (ldd): OpenSSL, libpg_query (Debian links the
# shared library) and toml++; Boost.Asio/Beast are header-only, libstdc++ is in the base image
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libssl3 libpg-query1504.0 libtomlplusplus3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin pgswitch
COPY --from=build /src/build/proxy/pgswitch /usr/local/bin/pgswitch
COPY docker/pgswitch.toml /etc/pgswitch/pgswitch.toml
RUN pgswitch --check -c /etc/pgswitch/pgswitch.toml
USER pgswitch
EXPOSE 6432 6480
CMD ["pgswitch", "-c", "/etc/pgswitch/pgswitch.toml"]
