#!/usr/bin/env bash
# ManiSkill3's SAPIEN needs a Vulkan device even without rendering. Debian 12's lavapipe
# (Mesa 22.3) lacks VK_KHR_external_semaphore_fd; Mesa 25 from bookworm-backports has it.
# Installs it where this machine allows (root, apt, Debian 12); elsewhere it says why not and
# leaves the machine as it is (the ManiSkill tests then skip, naming the reason).
set -uo pipefail
have() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
version=$(have mesa-vulkan-drivers)
if [[ "${version%%.*}" =~ ^[0-9]+$ ]] && (( ${version%%.*} >= 25 )) && [[ -n "$(have libvulkan1)" ]]; then
    echo "vulkan: mesa-vulkan-drivers $version is installed"
    exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "vulkan: not root or no apt-get: install mesa-vulkan-drivers>=25 by hand for ManiSkill"
    exit 0
fi
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [[ "$codename" != bookworm ]]; then
    echo "vulkan: not Debian 12 (bookworm) but '$codename': installing the distribution's driver"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
    exit 0
fi
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
fi
apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 ||
    echo "vulkan: the backports driver did not install; the ManiSkill tests will skip"
exit 0
